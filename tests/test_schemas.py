"""JSON Schema files in schemas/ match the pydantic models, and the models validate records."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from datakit import jsonschema
from datakit.schemas import KINDS, RECORD_MODELS, DatasetRef, Manifest


def test_schema_files_match_the_models():
    rendered = jsonschema.render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in jsonschema.SCHEMA_DIR.glob("*.schema.json")}
    stale = sorted(n for n in rendered if on_disk.get(n) != rendered[n])
    extra = sorted(set(on_disk) - set(rendered))
    assert not stale and not extra, f"schemas/ drifted ({stale or extra}); run `make schemas` and commit"


def test_every_kind_has_a_model_and_a_schema_file():
    assert set(RECORD_MODELS) == set(KINDS)
    for kind in KINDS:
        schema = json.loads((jsonschema.SCHEMA_DIR / f"record.{kind}.schema.json").read_text())
        assert schema["type"] == "object"


def test_message_roles_are_enumerated_in_the_schema():
    sft = json.loads((jsonschema.SCHEMA_DIR / "record.sft.schema.json").read_text())
    assert sft["$defs"]["Message"]["properties"]["role"]["enum"] == ["system", "user", "assistant", "tool"]


def test_records_refuse_unknown_fields_and_coercion():
    with pytest.raises(ValidationError):
        RECORD_MODELS["cpt"].model_validate({"text": "x", "txet": "typo"})
    with pytest.raises(ValidationError):
        RECORD_MODELS["cpt"].model_validate({"text": 5})


def test_refs_parse_and_print_back():
    assert str(DatasetRef.parse("acme-sft@v2")) == "acme-sft@v2"
    assert DatasetRef.parse("acme-sft").selector is None
    with pytest.raises(ValidationError):
        DatasetRef.parse("Acme/SFT@v1")


def test_manifest_requires_its_contract_fields():
    required = set(Manifest.model_json_schema()["required"])
    assert {"name", "version", "kind", "schema_version", "rows", "content_hash", "files", "parents", "op", "created"} <= required | {"schema_version", "parents"}
