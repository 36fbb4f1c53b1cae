"""The latent level's evaluation and analysis, on the tiny Qwen3 (random weights, CPU).

One latent adapter is built for the module as the training side saves one (extended tokenizer, resized
embedding, LoRA plus the reserved rows, two AdamW steps so that the rows differ from their initial values);
an eval-only trial then loads it by ``adapter=PATH``. The span's cap is lowered to 6 symbols so that every span
closes and the answer decodes free within a short token budget.
"""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from analysis.__main__ import main as analysis_main
from analysis.choose import level_text
from analysis.plots import LATENT_COLOR, level_color, trial_color
from analysis.trials import load_trials
from sweep.config_check import check_config
from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from tests.run_dirs import graded, nested, write_run_dir
from training.common.errors import ConfigError
from training.evaluation.inference import dense_copy
from training.evaluation.latent import save_merged
from training.latent.adapter import latent_lora_config, save_latent_adapter, token_rows
from training.latent.vocabulary import CLOSE, OPEN, abstract_vocab, add_abstract_tokens, resize_for
from training.models.hardware import resolve_hardware
from training.models.loading import load_tokenizer
from training.models.student import attach_adapter, load_student, student_for_engine
from training.sft.trainer import _lora_settings

CAP = ("level.latent.max_abstract_tokens=6", "level.latent.z_min=3", "level.latent.z_max=5")
LATENT = ("+level=abstract", "model=tiny-qwen3", "hardware=cpu", *CAP)


def config(*overrides: str):
    return compose_config(*LATENT, *overrides)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A latent adapter folder: LoRA, the trained reserved rows and the extended tokenizer."""
    from peft import get_peft_model
    from transformers import set_seed

    cfg = config("train.quantization=none")
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    vocab = add_abstract_tokens(student.tokenizer, 64)
    resize_for(student.model, student.tokenizer)
    set_seed(0)
    model = get_peft_model(student.model, latent_lora_config(_lora_settings(cfg.train), vocab, student.model))
    row = torch.tensor([student.tokenizer.encode("3 + 4?" + vocab.span([3, 41, 7]) + "\n#### 7<|im_end|>",
                                                 add_special_tokens=False)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(input_ids=row, labels=row).loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("latent") / "adapter"
    save_latent_adapter(model, student.tokenizer, folder)
    return folder


def test_eval_only_trial_writes_spans_of_reserved_tokens(adapter, tmp_path):
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    metrics = run_pipeline(config(f"adapter={adapter}", "stages=[eval]", "data.n_eval=4", "sampling.max_new_tokens=16",
                                  "hardware.precision=bf16", "wandb.mode=disabled"), run, group="tests")
    assert metrics["status"] == "completed", metrics.get("error")
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    vocab = abstract_vocab(tokenizer, 64)
    rows = [json.loads(line) for line in (run / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        assert row["output"].startswith(OPEN) and CLOSE in row["output"]  # forced open, closed by the cap at most
        span = row["output"][len(OPEN):row["output"].index(CLOSE)]
        ids = tokenizer.encode(span, add_special_tokens=False)
        assert ids and set(ids) <= set(vocab.symbol_ids)  # nothing but reserved symbols, no spaces between them
        assert row["think_tokens"] == len(ids) == row["span_symbols"] <= 6
    record = metrics["eval"]
    assert record["latent"] is True and record["max_abstract_tokens"] == 6
    assert record["mean_span_symbols"] == record["mean_think_tokens"] == sum(r["think_tokens"] for r in rows) / 4
    assert json.loads((run / "eval_results.json").read_text())["latent"] is True
    assert record["eval_compute"].startswith("a dense bf16 copy")  # inference.dense_copy with the reserved rows


@pytest.mark.parametrize(("overrides", "message"), [
    (("adapter=none", "stages=[eval]"), "the latent level needs an adapter trained at it: +level=abstract with train "
                                        "in stages, or adapter=PATH to one (adapter=none is the base model"),
    (("eval.thinking=both",), "eval.thinking=both has no meaning at the latent level"),
    (("eval.thinking=off", "stages=[eval]", "adapter=none"), "eval.thinking=off has no meaning at the latent level"),
    (("eval.n_shots=1",), "eval.n_shots=1: the latent level takes no exemplars"),
])
def test_evaluations_the_latent_level_cannot_have_are_one_line_before_any_stage(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_config(config(*overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_adapter_without_the_reserved_tokens_is_refused_before_any_stage(adapter, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (plain / name).write_bytes((adapter / name).read_bytes())
    (plain / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"id": 0, "content": "<|endoftext|>"}]}))
    with pytest.raises(ConfigError, match=r"needs an adapter trained at it.*lacks the reserved tokens <z00>, <z01>"):
        check_config(config(f"adapter={plain}", "stages=[eval]"))


def _attached(adapter: Path, quantization: str):
    cfg = config(f"train.quantization={quantization}")
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    attach_adapter(student, adapter)
    return student


@pytest.mark.parametrize(("quantization", "tolerance"), [("none", 1e-6), ("nf4", 0.05)])
def test_dense_copy_folds_the_reserved_rows_in(adapter, quantization, tolerance):
    """The CPU bf16 evaluation's dense copy, made in fp32 here to compare: the same function as the PEFT model (to
    bf16 precision for NF4, whose 4-bit kernel may round its input to bf16), its reserved rows the trained ones."""
    student = _attached(adapter, quantization)
    vocab = abstract_vocab(student.tokenizer, 64)
    row = torch.tensor([student.tokenizer.encode("2 + 2?" + vocab.span([1, 2, 63]) + "#### 4",
                                                 add_special_tokens=False)])
    dense = dense_copy(student.model, torch.float32)
    with torch.inference_mode():
        want, got = student.model(input_ids=row).logits, dense(input_ids=row).logits
    assert torch.allclose(got, want, atol=tolerance * want.abs().max().item())
    trained = token_rows(student.model)["model.embed_tokens"]
    assert torch.equal(dense.get_input_embeddings().weight, trained.float())
    assert dense.get_output_embeddings().weight.data_ptr() == dense.get_input_embeddings().weight.data_ptr()


def test_an_engine_that_loads_its_own_weights_gets_the_student_without_them(adapter):
    """What the vLLM backend takes instead of a loaded student: no weights, the tokenizer attaching the adapter
    gives (the extended one here), the adapter checked as attaching it checks it."""
    cfg = config()
    served, attached = student_for_engine(cfg.model, adapter), _attached(adapter, "none")
    assert served.model is None and (served.path, served.adapter) == (attached.path, attached.adapter)
    assert served.tokenizer.get_vocab() == attached.tokenizer.get_vocab()
    assert served.tokenizer.chat_template == attached.tokenizer.chat_template
    assert student_for_engine(cfg.model, None).tokenizer.get_vocab() == load_tokenizer(cfg.model).get_vocab()
    with pytest.raises(ConfigError, match="no LoRA adapter"):
        student_for_engine(cfg.model, adapter.parent)


def test_merged_model_for_vllm_computes_what_the_adapter_does(adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = config()
    merged = save_merged(cfg.model, adapter, tmp_path / "merged", dtype=torch.float32, device="cpu")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(merged), AutoTokenizer.from_pretrained(merged)
    student = _attached(adapter, "none")
    vocab = abstract_vocab(tokenizer, 64)
    assert vocab == abstract_vocab(student.tokenizer, 64) and tokenizer.chat_template == student.tokenizer.chat_template
    row = torch.tensor([tokenizer.encode("2 + 2?" + vocab.span([5, 9]) + "#### 4", add_special_tokens=False)])
    with torch.inference_mode():
        assert torch.allclose(model(input_ids=row).logits, student.model(input_ids=row).logits, atol=1e-5)


def _latent_run(root: Path, name: str, accuracy: float, think: float, flag: bool = True) -> Path:
    """A hand-made latent run dir: the composed config has level.latent; its eval record says latent."""
    run = write_run_dir(root, name, 6, accuracy, think, n_eval=100, overrides=["+level=abstract"],
                        samples=graded(nested(accuracy), int(think)))
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    config["level"] = {"id": 6, "name": "Latent", "latent": {"n_symbols": 64}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["level_name"] = "Latent"
    if flag:
        metrics["latent"] = True  # flat, as a hand-made record: read into the eval record like the extractor
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_analysis_names_a_latent_run_latent(tmp_path, capsys):
    root = tmp_path / "sweep"
    write_run_dir(root, "L1", 1, 0.60, 40.0, n_eval=100, samples=graded(nested(0.60), 40))
    _latent_run(root, "abstract", 0.58, 18.0)
    _latent_run(root, "config_only", 0.50, 30.0, flag=False)  # known from .hydra/config.yaml alone
    by_name = {t.name: t for t in load_trials(str(root)).trials}
    latent, verbal = by_name["abstract"], by_name["L1"]
    assert latent.latent and by_name["config_only"].latent and not verbal.latent
    assert (latent.label, by_name["config_only"].label, verbal.label) == ("latent", "latent", "L1")
    assert level_text(latent) == "the latent level" and level_text(verbal) == "level 1"
    assert trial_color(latent) == LATENT_COLOR != level_color(6) and trial_color(verbal) == level_color(1)

    assert analysis_main(["table", str(root)]) == 0
    table = capsys.readouterr().out
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["L1", "latent", "latent"]
    # The latent point is on the front with fewer think tokens; against the best (L1) it is undecided.
    analysis_main(["choose", str(root)])
    choice = capsys.readouterr().out
    assert "closest to being shown: abstract (the latent level)" in choice and "latent abstract" in choice
    assert analysis_main(["report", str(root), "--out", str(tmp_path / "report"), "--wandb", "disabled"]) == 0
    report = capsys.readouterr().out
    assert "latent abstract" in report
    page = re.sub(r"<script.*?</script>", "", (tmp_path / "report" / "report.html").read_text(), flags=re.S)
    assert "<td>latent</td>" in page
    for text in (table, choice, report, page):  # the page without plotly's code, whose names hold "L6"
        assert "L6" not in text
