"""The config schema (schema.py) and its loader (loading.py); the YAML files beside them are
experiments written in that schema."""
