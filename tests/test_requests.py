"""The values that cross layers (core/requests.py): their JSON forms, their checks, and their place on the
ground floor."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from core.ground import UserError
from core.requests import (
    CLASS_SETS,
    LABEL_MODES,
    POOLINGS,
    BuildRequest,
    ChromaServer,
    EvalSettings,
    IndexRef,
    ModelSpec,
    SearchQuery,
)
from tests.helpers import ROOT


def _through_json(data: dict) -> dict:
    return json.loads(json.dumps(data))


def test_importing_the_values_imports_nothing_above_the_ground_floor() -> None:
    script = (
        "import sys, core.requests\n"
        "print(sorted(m for m in sys.modules if m.startswith(('core.', 'torch', 'open_clip', 'chromadb', 'numpy', "
        "'cv2', 'PIL'))))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.replace("'", '"')) == ["core.ground", "core.requests"]


def test_a_build_request_round_trips_through_json() -> None:
    spec = ModelSpec(name="TinyCLIP-test", pretrained="/models/tiny.pt", config_path="/models/t.json",
                     config_json='{"embed_dim": 8}')  # fmt: skip
    server = ChromaServer("chroma.example", 8443, ssl=True, token="secret", token_header="X-Token")
    request = BuildRequest(
        videos="clips", db="db", output="out", spec=spec, frames="uniform:4", annotations="notes.csv",
        batch_size=16, device="cpu", precision="fp16", workers=3, engine="ray", ray_address="auto",
        allowed_roots=("/data", "/tmp"), servers=(server,), shards=4,
    )  # fmt: skip
    data = _through_json(request.to_json())
    assert set(data) == {f.name for f in fields(BuildRequest)} | {"server"}  # "server": the first, as before lists
    assert "secret" not in json.dumps(data)  # the token comes from the environment, never from the JSON form
    back = BuildRequest.from_json(data)
    assert back == BuildRequest(**{**request.__dict__, "servers": (ChromaServer("chroma.example", 8443, True, "",
                                                                                "X-Token"),)})  # fmt: skip
    assert back.target == IndexRef(db="db", servers=back.servers) and back.spec.identity() == spec.identity()
    minimal = BuildRequest.from_json({"videos": "v"})
    assert minimal == BuildRequest(videos="v") and minimal.spec == ModelSpec()


def test_eval_settings_round_trip_and_refuse_what_they_do_not_know() -> None:
    for settings in (
        EvalSettings(),
        EvalSettings(
            prompts=("kinetics-ensemble", "a photo of {label}"), pooling="max", label_mode="strip", classes="all"
        ),
        *(EvalSettings(pooling=p, label_mode=m, classes=c) for p in POOLINGS for m in LABEL_MODES for c in CLASS_SETS),
    ):
        assert EvalSettings.from_json(_through_json(settings.to_json())) == settings
        assert EvalSettings.loads(settings.dumps()) == settings
    assert EvalSettings(prompts="english").prompts == ("english",)  # a single set, as text
    assert EvalSettings(prompts=("", "  ")).prompts == ("english",)  # nothing typed: the default
    for field, value, said in (("pooling", "median", "pooling"), ("label_mode", "shout", "label mode"),
                               ("classes", "some", "class set")):  # fmt: skip
        with pytest.raises(UserError, match=f"^Unknown {said} '{value}': use one of "):
            EvalSettings(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(UserError, match="pooling must be a text"):
        EvalSettings.from_json({"pooling": 3})
    with pytest.raises(UserError, match="prompts must be a text or a list of texts"):
        EvalSettings.from_json({"prompts": [1, 2]})
    for link, phrase in (("[1]", "not an object"), ("{", "not valid JSON"), ('{"x": 1}', "unknown keys (x)"),
                         ("[" * 100_000, "characters long"), ("[" * 20_000, "nest too deeply")):  # fmt: skip
        with pytest.raises(UserError) as caught:
            EvalSettings.loads(link)
        assert phrase in str(caught.value) and "\n" not in str(caught.value)


def test_an_index_ref_and_a_model_spec_round_trip() -> None:
    ref = IndexRef(db="db", servers=(ChromaServer("h", 9000),), collection="clip_abc")
    assert IndexRef.from_json(_through_json(ref.to_json())) == ref
    assert ref.store() == IndexRef(db="db", servers=ref.servers) and ref.store().with_collection("x").collection == "x"
    assert ref.key() == "http://h:9000" and IndexRef(db="here").key() == "here"
    assert IndexRef(db="here", collection="c").describe() == "here/ · c"
    spec = ModelSpec(name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert ModelSpec.from_metadata(_through_json(spec.to_metadata())) == spec
    assert spec.identity() == ModelSpec.from_metadata(spec.to_metadata()).identity() != ModelSpec().identity()
    assert not spec.is_checkpoint and ModelSpec(pretrained="/abs/w.pt").is_checkpoint


def test_a_search_query_holds_every_choice_once() -> None:
    names = {f.name for f in fields(SearchQuery)}
    assert names == {"text", "k", "one_per_video", "label", "image", "add", "subtract", "like", "min_similarity",
                     "adaptive", "moments", "margin", "distribution"}  # fmt: skip
    query = SearchQuery("a dog")
    assert (query.k, query.margin, query.moments, query.like) == (5, 0.02, False, None)
