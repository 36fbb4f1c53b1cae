"""Typed reads of config values (``settings``) and the schema of every config group users edit (``schema``)."""
