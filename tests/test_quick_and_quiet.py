"""Issue 28, items 4 and 6: pooler names are checked without torch (a misspelt ``model.pooling``
or design is refused at once, a pooler a user registers is still valid), and mteb's "superseded"
notice comes once per task, however often the layer ablation evaluates it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from poolattn.config import ConfigError
from poolattn.evaluation.encoder import MTEBEncoder
from poolattn.evaluation.local import LocalDataset, build_task
from poolattn.evaluation.runner import run_mteb_task
from poolattn.pooler_names import BUILTIN_POOLERS, check_pooling, pooler_names

PROBE = """
import json, sys
from poolattn.design import parse_design
from poolattn.training.config import load_train_config
errors = []
for check in (lambda: load_train_config(sys.argv[1]), lambda: parse_design("multilayr+causal")):
    try:
        check()
    except ValueError as exc:
        errors.append(str(exc))
print(json.dumps({"errors": errors, "torch": "torch" in sys.modules}))
"""


def test_a_misspelt_pooler_is_refused_without_importing_torch(tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text('[model]\npooling = "multilayr"\n\n[data]\ntrain = ["pairs.jsonl"]\n')
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    assert len(result["errors"]) == 2
    assert all("did you mean 'multilayer'" in error for error in result["errors"])
    assert result["errors"][0].startswith("model.pooling: 'multilayr' is not valid")


def test_the_torch_free_list_names_the_builtin_classes_and_registered_ones() -> None:
    from poolattn.pooling import POOLERS, register

    assert tuple(POOLERS)[: len(BUILTIN_POOLERS)] == BUILTIN_POOLERS
    with pytest.raises(ConfigError, match="'eos_again' is not valid"):
        check_pooling("eos_again")
    register("eos_again")(type("EosAgain", (POOLERS["eos"],), {}))
    try:
        check_pooling("eos_again")
        assert pooler_names()[-1] == "eos_again"
    finally:
        del POOLERS["eos_again"]


def test_mteb_says_a_task_is_superseded_once_per_task(
    tiny_model, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "sts" / "STSBenchmark"  # mteb's STSBenchmark is superseded by STSBenchmark.v2
    folder.mkdir(parents=True)
    rows = [
        {"sentence1": f"a dog runs {i}", "sentence2": f"the cat {i} sleeps", "score": i % 5} for i in range(8)
    ]
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    encoder = MTEBEncoder(tiny_model(), cache_dir=None)

    def notices(runs: int) -> int:
        """Log lines and warnings saying "superseded" over ``runs`` evaluations of one task."""
        task = build_task(LocalDataset("sts", "STSBenchmark", folder), max_items=None).task
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="mteb"):
            warnings.simplefilter("always")
            for _ in range(runs):
                run_mteb_task(encoder, task, 8)
        said = [r for r in caplog.records if "superseded by 'STSBenchmark.v2'" in r.getMessage()]
        return len(said) + sum("superseded" in str(w.message) for w in caught)

    assert notices(3) == 2  # the log line and the warning, once (the CLI drops the warning)
    assert notices(1) == 2  # a new task object, as a new evaluation builds: said again
