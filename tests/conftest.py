"""Shared fixtures: real Triton servers on free loopback ports, always stopped afterwards; one
exported model repository per session."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from padrec.server import ServerConfig, TritonServer

MODEL_REPOSITORIES = Path(__file__).parent / "fixtures" / "model_repositories"


def pytest_configure(config: pytest.Config) -> None:
    # A CI time-out or `kill` sends SIGTERM: taking Ctrl-C's path lets fixture teardown stop servers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def loopback_config(repository: Path, log_dir: Path, **overrides: object) -> ServerConfig:
    """A server on 127.0.0.1 with free ports, logging into log_dir."""
    return ServerConfig(
        model_repository=repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_path=log_dir / "tritonserver.log",
        **overrides,
    )


# Session-wide servers: a test that needs one learns at once, and in its own failure message, when
# it has died (and how), rather than from a connection refused.
SESSION_SERVERS = ("roundtrip_server", "recommend_server")


@pytest.fixture(autouse=True)
def session_servers_stay_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test whose session server died before it, and the test during which one died."""
    servers = {name: request.getfixturevalue(name) for name in SESSION_SERVERS if name in request.fixturenames}
    for name, server in servers.items():
        if (ended := server.exit_report()) is not None:
            pytest.fail(f"{name} had died before this test: tritonserver {ended}", pytrace=False)
    yield
    for name, server in servers.items():
        if (ended := server.exit_report()) is not None:
            pytest.fail(f"{name} died during this test: tritonserver {ended}", pytrace=False)


@pytest.fixture
def start_triton(tmp_path: Path) -> Iterator[Callable[..., TritonServer]]:
    """Factory: `start_triton(repository, **config_overrides)` returns a ready server.

    Every server it started is stopped when the test ends, whether it passed or failed.
    """
    servers: list[TritonServer] = []

    def start(repository: Path, **overrides: object) -> TritonServer:
        server = TritonServer(loopback_config(repository, tmp_path / f"server-{len(servers)}", **overrides))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def roundtrip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One server for the whole session on the `echo` / `bls_echo` repository."""
    config = loopback_config(MODEL_REPOSITORIES / "roundtrip", tmp_path_factory.mktemp("roundtrip-server"))
    with TritonServer(config) as server:
        yield server


@pytest.fixture
def private_repository(tmp_path: Path) -> Callable[[str], Path]:
    """Copies a fixture repository, by name, to a path that only this test's processes mention."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(MODEL_REPOSITORIES / name, tmp_path / f"repository-{name}"))

    return copy


@dataclass
class Exported:
    """What `exported_tiny` made: the artifacts, the repository and the models it was exported from."""

    artifacts: Path
    repository: Path
    manifest: dict
    target: object  # padrec.models.target.Target
    draft: object  # padrec.models.draft.Draft
    trie: object  # padrec.decoding.constraints.ItemTrie


# The draft graph of `exported_tiny` has room for every forced run of its catalogue's items (4 after
# a first code), so its proposals equal TorchDraft's in every round.
EXPORT_DRAFT_TOKENS, EXPORT_FORCED_ROOM = 3, 4
# The tiny export decodes with a prefix-size prior (the served Beauty repository without one), so
# graphs, engine and served decoder are tested both ways. It comes from the dataset's decoding.json,
# as `padrec tune-prior` would leave it, so export is also tested reading the dataset's default.
EXPORT_PREFIX_SIZE_PENALTY = 0.5


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """`padrec export --backend python` of random-weight tiny models on a synthetic 60-item dataset.

    Exporting takes most of a minute on two busy cores, so the session shares one repository.
    """
    import torch

    from padrec.artifacts import ArtifactPaths, save_decode_defaults
    from padrec.cli import main
    from padrec.config import DRAFTERS, ModelConfig
    from padrec.data.datasets import load_generic
    from padrec.decoding.constraints import ItemTrie
    from padrec.models.draft import Draft
    from padrec.models.target import Target
    from padrec.semantic_ids import SemanticIds, disambiguate

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    interactions = root / "interactions.txt"
    sequences = [rng.choice(60, rng.integers(4, 10), replace=False) for _ in range(40)]
    interactions.write_text("".join(f"u{u} " + " ".join(f"i{i}" for i in items) + "\n"
                                    for u, items in enumerate(sequences)))
    items = load_generic("tiny", interactions).items
    art = root / "artifacts"
    (art / "tiny").mkdir(parents=True)
    (art / "tiny" / "dataset.json").write_text(json.dumps({"kind": "generic", "name": "tiny",
                                                           "interactions": str(interactions)}))
    (art / "tiny" / "item_ids.json").write_text(json.dumps(items))
    codes = disambiguate(rng.integers(0, (6, 4, 3), size=(len(items), 3)))
    sids = SemanticIds(codes, [6, 4, 3, int(codes[:, -1].max()) + 1])
    sids.save(art / "tiny" / "semantic_ids.npz")
    torch.manual_seed(0)
    # an item-embedding target, as the default preset trains: the served target model makes its marks
    target = Target(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=160, item_embedding=True),
                    sids.vocab_size, sids.num_items)
    target.save(art / "tiny" / "target.pt")
    for drafter in ("padrec", "eagle"):
        Draft.from_target(DRAFTERS[drafter], target, sids.num_slots).save(art / "tiny" / f"draft_{drafter}.pt")

    save_decode_defaults(ArtifactPaths(art / "tiny"), {"prefix_size_penalty": EXPORT_PREFIX_SIZE_PENALTY},
                         {"split": "none: set by the test fixture"})

    repository = root / "repository"
    status = main(["export", "--dataset", "tiny", "--backend", "python", "--artifacts", str(art), "--out",
                   str(repository), "--check-users", "10", "--draft-tokens", str(EXPORT_DRAFT_TOKENS),
                   "--forced-room", str(EXPORT_FORCED_ROOM), "--json"])
    assert status == 0
    return Exported(art, repository, json.loads((repository / "padrec_export.json").read_text()),
                    Target.load(art / "tiny" / "target.pt"), Draft.load(art / "tiny" / "draft_padrec.pt"),
                    ItemTrie(sids, EXPORT_PREFIX_SIZE_PENALTY))


# Files `padrec export` writes into a model repository (the rest of model_repository/ is committed).
EXPORTED_ENTRIES = ("target", "draft_*", "padrec_export.json", "semantic_ids.npz", "item_ids.json")
SERVED_DATASET = "beauty"
SERVED_LOAD_THRESHOLD = 8


@pytest.fixture(scope="session")
def served_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served recommender in a private folder: model_repository/'s committed models plus
    `padrec export --backend python` of the committed Beauty target and drafts."""
    from padrec.cli import main
    from padrec.config import REPO_ROOT

    out = tmp_path_factory.mktemp("served") / "model_repository"
    shutil.copytree(REPO_ROOT / "model_repository", out, symlinks=True,
                    ignore=shutil.ignore_patterns(*EXPORTED_ENTRIES, "__pycache__"))
    assert main(["export", "--dataset", SERVED_DATASET, "--backend", "python", "--out", str(out),
                 "--check-users", "3", "--json"]) == 0
    # The tests send up to 8 requests at once and check that they were decoded speculatively, so
    # batches of up to 8 must draft: the deployment setting, in the form a user would write it.
    for decode_model in ("padrec_decode", "recommend_stream"):
        with (out / decode_model / "config.pbtxt").open("a") as config:
            config.write(f'parameters {{ key: "load_threshold" value {{ string_value: "{SERVED_LOAD_THRESHOLD}" }} }}\n')
    return out


@pytest.fixture(scope="session")
def recommend_server(served_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One server for the session serving `recommend` (and everything it chains) on Beauty."""
    config = loopback_config(served_repository, tmp_path_factory.mktemp("recommend-server"))
    with TritonServer(config) as server:
        yield server


@pytest.fixture(scope="session")
def beauty_split():
    """Beauty's leave-one-out split (padrec.data.split.Split: internal indices)."""
    from padrec.artifacts import load_prepared

    return load_prepared(SERVED_DATASET).split


@pytest.fixture(scope="session")
def beauty_histories(beauty_split) -> list[list[str]]:
    """The first 200 Beauty test users' histories as external item IDs (what clients send)."""
    return [[beauty_split.item_ids[i] for i in example.history] for example in beauty_split.test[:200]]
