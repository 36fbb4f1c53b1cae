"""Problem loading: shipped data, local files, deterministic disjoint subsets, bad rows."""

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_config
from training.common.errors import ConfigError, DataError
from training.data.problems import canonical_number, load_problems


def data_cfg(*overrides: str):
    """GSM8K unless the overrides pick another data set (the embedded default is SVAMP)."""
    choice = () if any(o.startswith("data=") for o in overrides) else ("data=gsm8k",)
    return compose_config("+level=4", *choice, *overrides).data


def test_gsm8k_from_the_package_is_normalised_and_deterministic():
    splits = load_problems(data_cfg("data.n_train=50", "data.n_eval=20"))
    assert (len(splits.train), len(splits.eval)) == (50, 20)
    first = splits.train[0]
    assert first.id.startswith("gsm8k-train-") and "####" not in first.solution and first.answer.lstrip("-").isdigit()
    assert "<<" in first.solution  # calculator marks are kept for the teacher
    again = load_problems(data_cfg("data.n_train=50", "data.n_eval=20"))
    assert [p.id for p in again.train] == [p.id for p in splits.train]
    bigger = load_problems(data_cfg("data.n_train=80", "data.n_eval=20"))
    assert [p.id for p in bigger.train[:50]] == [p.id for p in splits.train]  # subsets nest
    other = load_problems(data_cfg("data.n_train=50", "data.n_eval=20", "data.seed=7"))
    assert [p.id for p in other.train] != [p.id for p in splits.train]
    assert splits.stats["rows"] == 7473 + 1319 and splits.stats["skipped_no_gold"] == 0


def test_svamp_train_and_eval_never_overlap():
    splits = load_problems(data_cfg("data=svamp", "data.n_train=700", "data.n_eval=300"))
    train_ids, eval_ids = {p.id for p in splits.train}, {p.id for p in splits.eval}
    assert len(train_ids) == 700 and len(eval_ids) == 300 and not train_ids & eval_ids
    assert not {p.question for p in splits.train} & {p.question for p in splits.eval}
    assert splits.train[0].solution.startswith("(") and splits.train[0].answer.isdigit()


def test_asdiv_answers_lose_their_unit_and_non_numbers_are_counted():
    splits = load_problems(data_cfg("data=asdiv", "data.n_train=200", "data.n_eval=400"))
    assert (len(splits.train), len(splits.eval)) == (200, 400)
    assert splits.stats["rows"] == 2215 and splits.stats["skipped_no_gold"] == 123  # ratios, remainders
    first = next(p for p in splits.train if p.solution == "16+7+18=41")
    assert first.answer == "41" and first.question.startswith("Jean had a bag of candy. She gave 18")
    assert not {p.id for p in splits.train} & {p.id for p in splits.eval}


def test_train_on_asdiv_evaluate_on_svamp():
    splits = load_problems(data_cfg("data=asdiv-svamp", "data.n_train=300", "data.n_eval=400"))
    assert splits.stats["train_origin"].endswith("asdiv/test.jsonl")
    assert splits.stats["eval_origin"].endswith("svamp/test.jsonl")
    assert all(p.id.startswith("chal-") for p in splits.eval) and not any(p.id.startswith("chal-") for p in splits.train)
    svamp_only = load_problems(data_cfg("data=svamp", "data.n_train=0", "data.n_eval=400"))
    assert [p.id for p in splits.eval] == [p.id for p in svamp_only.eval]  # the same 400 SVAMP problems
    assert not {p.question for p in splits.train} & {p.question for p in splits.eval}


def test_n_train_larger_than_the_data_set_is_a_clear_error():
    with pytest.raises(DataError, match=r"data.n_train=8000 exceeds the 7473 problems available in .*gsm8k/train.jsonl"):
        load_problems(data_cfg("data.n_train=8000"))
    with pytest.raises(DataError, match="after setting aside the eval set"):
        load_problems(data_cfg("data=svamp", "data.n_train=900", "data.n_eval=200"))


def _files_cfg(path, **extra):
    cfg = OmegaConf.to_container(data_cfg(), resolve=True)
    cfg.update({"source": "files", "train_path": str(path), "eval_path": None, "n_train": 2, "n_eval": 1, **extra})
    return cfg


def test_local_jsonl_with_a_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    good = json.dumps({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"})
    path.write_text(f"{good}\n{good}\n\n{{\"question\": \"broken\n")
    with pytest.raises(DataError, match=r"mine.jsonl:4: malformed JSON"):
        load_problems(_files_cfg(path))


def test_missing_field_names_file_line_and_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n" + json.dumps({"prompt": "q"}) + "\n")
    with pytest.raises(DataError, match=r"mine.jsonl:2: missing field 'question'"):
        load_problems(_files_cfg(path))


def test_rows_without_a_gold_answer_are_skipped_and_counted(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"x=<<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"} for i in range(4)]
    rows.append({"question": "no gold", "answer": "no final line"})
    rows.append({"question": "bad gold", "answer": "#### twelve"})
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_problems(_files_cfg(path))
    assert splits.stats["skipped_no_gold"] == 2 and splits.stats["rows"] == 6
    assert splits.stats["skipped_no_gold_examples"] == ["mine.jsonl:5", "mine.jsonl:6"]
    assert len(splits.train) == 2 and len(splits.eval) == 1


def test_repeated_ids_keep_the_first_row_and_are_counted_and_named(tmp_path, caplog):
    rows = [{"id": f"p{i % 4}", "question": f"q{i}", "answer": f"#### {i}"} for i in range(6)]  # p0 and p1 twice
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _files_cfg(path, n_train=None, n_eval=0)
    cfg["fields"] = {**cfg["fields"], "id": "id"}
    with caplog.at_level("WARNING", logger="training.data.problems"):
        splits = load_problems(cfg)
    assert splits.stats["duplicate_ids"] == 2
    assert splits.stats["duplicate_id_examples"] == ["p0 (mine.jsonl:5)", "p1 (mine.jsonl:6)"]
    assert sorted((p.id, p.question) for p in splits.train) == [("p0", "q0"), ("p1", "q1"), ("p2", "q2"), ("p3", "q3")]
    assert "data: 2 rows skipped repeating an earlier id, the first row with each id kept (first: p0 (mine.jsonl:5), " \
           "p1 (mine.jsonl:6))" in caplog.text


def test_unreadable_files_name_the_file_and_line(tmp_path):
    binary = tmp_path / "mine.jsonl"
    binary.write_bytes(b'{"question": "q", "answer": "#### 1"}\n' + bytes(range(128, 256)) + b"\n")
    with pytest.raises(DataError, match=r"mine.jsonl:2: not UTF-8 text \(byte 0x80 at column 1\); is this a JSONL file\?$"):
        load_problems(_files_cfg(binary))
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"question": "caf\u00e9 au lait?", "answer": "#### 1"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl:1: not UTF-8 text \(byte 0xe9 at column 18\)"):
        load_problems(_files_cfg(latin1))
    fake = tmp_path / "mine.parquet"
    fake.write_text('{"question": "q", "answer": "#### 1"}\n')
    with pytest.raises(DataError, match=r"mine.parquet: not a readable Parquet file \(Parquet magic bytes not found"):
        load_problems(_files_cfg(fake))


@pytest.mark.parametrize(
    ("override", "message"),
    [("data.n_train=abc", "data.n_train must be null or an integer >= 0, got 'abc'"),
     ("data.n_eval=-1", "data.n_eval must be null or an integer >= 0, got -1"),
     ("data.seed=abc", "data.seed must be an integer >= 0, got 'abc'"),
     ("data.n_train=2.5", "data.n_train must be null or an integer >= 0, got 2.5")],
)
def test_data_settings_are_checked_before_any_file_is_read(override, message):
    from training.config.schema import read_group

    cfg = data_cfg(override, "data.source=files", "data.train_path=/nonexistent.jsonl")
    with pytest.raises(ConfigError) as caught:
        read_group("data", cfg)
    assert str(caught.value) == message
    with pytest.raises(ConfigError, match="got"):  # the loader reads through the same check
        load_problems(cfg)


def test_local_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mine.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": f"q{i}", "answer": f"#### {i}"} for i in range(5)]), path)
    splits = load_problems(_files_cfg(path))
    assert {p.answer for p in splits.train + splits.eval} <= {"0", "1", "2", "3", "4"}


def test_files_source_without_a_path_and_unknown_source():
    cfg = OmegaConf.to_container(data_cfg(), resolve=True)
    with pytest.raises(ConfigError, match="data.source=files needs data.eval_path"):
        load_problems({**cfg, "source": "files"})
    with pytest.raises(ConfigError, match="is not one of package, hub, files"):
        load_problems({**cfg, "source": "ftp"})


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("72", "72"), ("1,000", "1000"), (145.0, "145"), ("$18.50", "18.5"), ("-3", "-3"), ("0.25", "0.25"), ("twelve", None), (None, None),
     ("9 (apples)", "9"), ("2.5 (cm)", "2.5"), ("3 r2", None), ("5:3", None)],
)
def test_canonical_number(raw, canonical):
    assert canonical_number(raw) == canonical


def test_problems_carry_their_task_type_for_routing():
    from collections import Counter

    svamp = load_problems(compose_config("+level=4").data)
    assert set(Counter(p.task_type for p in svamp.eval)) <= {"Addition", "Subtraction", "Multiplication",
                                                                "Common-Division", "Common-Divison"}
    cross = load_problems(compose_config("+level=4", "data=asdiv-svamp").data)
    assert "Ratio" in {p.task_type for p in cross.train} and "Common-Division" in {p.task_type for p in cross.eval}
    gsm8k = load_problems(compose_config("+level=4", "data=gsm8k", "data.n_train=0", "data.n_eval=200").data)
    buckets = Counter(p.task_type for p in gsm8k.eval)
    assert set(buckets) == {"0-2 steps", "3 steps", "4 steps", "5+ steps"} and sum(buckets.values()) == 200
    # The bucket is the count of calculator marks in the reference solution.
    assert all(p.task_type == "3 steps" for p in gsm8k.eval if p.solution.count("<<") == 3)
