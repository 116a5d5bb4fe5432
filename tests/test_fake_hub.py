"""The unmodified huggingface_hub client against tests.fakes.hub.FakeHub, over real sockets."""

import json
import time

import aiohttp
import numpy as np
import pytest
from huggingface_hub import HfApi, HfFileSystem, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import load_file

from tests.fakes.hub import FakeFile, FakeHub, FakeRepo, safetensors_file, safetensors_header

GB = 1000**3
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8}


@pytest.fixture(autouse=True)
def isolated_client(monkeypatch, tmp_path):
    # huggingface_hub reads its HF_HUB_* environment variables once, at import, so patch the constants instead.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)  # never send a token stored on this machine
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))  # used by get_safetensors_metadata


@pytest.fixture
def hub():
    with FakeHub() as h:
        yield h


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.endpoint)


def small_model(repo_id="org/small", **kwargs) -> FakeRepo:
    weights = safetensors_file({"embed": ("F32", [4, 8]), "norm": ("F16", [8])}, metadata={"format": "mlx"})
    files = {"config.json": CONFIG, "model.safetensors": weights, "README.md": "# small\n"}
    return FakeRepo(repo_id, files, **kwargs)


def sharded_model(repo_id="org/sharded") -> FakeRepo:
    shards = {
        "model-00001-of-00002.safetensors": {"a": ("BF16", [1000, 1000]), "b": ("BF16", [1000])},
        "model-00002-of-00002.safetensors": {"c": ("I32", [3, 4])},
    }
    files = {name: safetensors_file(tensors) for name, tensors in shards.items()}
    weight_map = {tensor: name for name, tensors in shards.items() for tensor in tensors}
    files["model.safetensors.index.json"] = {"metadata": {"total_size": 2_002_048}, "weight_map": weight_map}
    return FakeRepo(repo_id, files)


def test_safetensors_header_matches_the_format():
    content, size = safetensors_header({"x": ("F16", [2, 3]), "y": ("F8_E4M3", [5])}, {"format": "pt"})
    header_size = int.from_bytes(content[:8], "little")
    header = json.loads(content[8:])
    assert len(content) == 8 + header_size and header_size % 8 == 0
    assert header["x"] == {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 12]}
    assert header["y"]["data_offsets"] == [12, 17]
    assert header["__metadata__"] == {"format": "pt"}
    assert size == len(content) + 17


def test_model_info_with_files_metadata(hub, api):
    repo = hub.add_repo(
        small_model(
            tags=["base_model:meta-llama/Llama-3.1-8B", "mlx", "safetensors"],
            card_data={"base_model": "meta-llama/Llama-3.1-8B", "library_name": "mlx"},
            library_name="mlx",
            downloads=42,
        )
    )

    info = api.model_info(repo.repo_id, files_metadata=True)

    assert info.sha == repo.sha and len(info.sha) == 40
    assert info.card_data.base_model == "meta-llama/Llama-3.1-8B"
    assert "base_model:meta-llama/Llama-3.1-8B" in info.tags
    assert (info.library_name, info.downloads, info.gated, info.private) == ("mlx", 42, False, False)
    assert info.safetensors.parameters == {"F32": 32, "F16": 8} and info.safetensors.total == 40
    assert info.config == {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    siblings = {s.rfilename: s for s in info.siblings}
    weights = siblings["model.safetensors"]
    assert weights.size == repo.files["model.safetensors"].size
    assert weights.lfs.size == weights.size and len(weights.lfs.sha256) == 64
    assert siblings["config.json"].lfs is None and siblings["config.json"].size > 0
    assert hub.requests[-1].query["blobs"] == "true"


def test_model_info_expand_returns_only_what_was_asked(hub, api):
    hub.add_repo(small_model())
    info = api.model_info("org/small", expand=["siblings", "downloads"])
    assert [s.size for s in info.siblings] == [None, None, None]
    assert info.downloads == 0 and info.tags is None  # expand returns only what was asked for


def test_hf_hub_download_config(hub, tmp_path):
    repo = hub.add_repo(small_model())

    path = hf_hub_download(repo.repo_id, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)
    again = hf_hub_download(repo.repo_id, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)

    assert json.loads(open(path).read()) == CONFIG
    assert path == again and path.startswith(str(tmp_path)) and repo.sha in path
    assert hub.count("GET", "/resolve/main/config.json") == 1  # the second call is served from the cache
    assert hub.count("HEAD", "/resolve/main/config.json") == 2


def test_get_safetensors_metadata_single_file(hub, api):
    hub.add_repo(small_model())

    meta = api.get_safetensors_metadata("org/small")

    assert not meta.sharded
    assert meta.weight_map == {"embed": "model.safetensors", "norm": "model.safetensors"}
    tensors = meta.files_metadata["model.safetensors"].tensors
    assert (tensors["embed"].dtype, tensors["embed"].shape) == ("F32", [4, 8])
    assert meta.files_metadata["model.safetensors"].metadata == {"format": "mlx"}
    assert meta.parameter_count == {"F32": 32, "F16": 8}
    assert hub.requests[-1].headers["Range"] == "bytes=0-100000"


def test_get_safetensors_metadata_sharded(hub, api):
    hub.add_repo(sharded_model())

    meta = api.get_safetensors_metadata("org/sharded")

    assert meta.sharded and meta.metadata == {"total_size": 2_002_048}
    assert meta.weight_map["c"] == "model-00002-of-00002.safetensors"
    assert meta.files_metadata["model-00002-of-00002.safetensors"].tensors["c"].dtype == "I32"
    assert meta.parameter_count == {"BF16": 1_001_000, "I32": 12}
    assert api.model_info("org/sharded").safetensors.total == 1_001_012


def test_gated_repo_info_is_public_but_downloads_need_an_authorized_token(hub, api, tmp_path):
    hub.add_repo(small_model("meta/gated", gated="manual"))
    hub.authorized_tokens.add("hf_granted")

    assert api.model_info("meta/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("meta/gated", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)
    with pytest.raises(GatedRepoError) as unauthorized:
        hf_hub_download("meta/gated", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_other")
    path = hf_hub_download("meta/gated", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token="hf_granted")

    assert anonymous.value.response.status_code == 401
    assert unauthorized.value.response.status_code == 403
    assert json.loads(open(path).read()) == CONFIG
    assert hub.requests[-1].token == "hf_granted"


def test_unknown_and_private_repos_are_not_found(hub, api, tmp_path):
    hub.add_repo(small_model("org/secret", private=True))

    for repo_id in ("org/missing", "org/secret"):
        with pytest.raises(RepositoryNotFoundError) as error:
            api.model_info(repo_id)
        assert error.value.response.status_code == 401
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(repo_id, "config.json", endpoint=hub.endpoint, cache_dir=tmp_path)

    hub.authorized_tokens.add("hf_owner")
    assert HfApi(endpoint=hub.endpoint, token="hf_owner").model_info("org/secret").private is True


def test_unknown_file_is_an_entry_not_found(hub, api, tmp_path):
    hub.add_repo(small_model())

    with pytest.raises(RemoteEntryNotFoundError) as error:
        hf_hub_download("org/small", "missing.json", endpoint=hub.endpoint, cache_dir=tmp_path)

    assert isinstance(error.value, EntryNotFoundError)
    assert api.file_exists("org/small", "config.json")
    assert not api.file_exists("org/small", "missing.json")
    assert not api.file_exists("org/missing", "config.json")


def test_revisions(hub, api, tmp_path):
    repo = small_model()
    repo.revisions["v1"] = {"config.json": {**CONFIG, "hidden_size": 4}}
    hub.add_repo(repo)

    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/small", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/small", "config.json", revision="nope", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert api.model_info("org/small", revision=repo.sha).sha == repo.sha
    assert api.model_info("org/small", revision="v1").sha == repo.sha_of("v1") != repo.sha
    v1 = hf_hub_download("org/small", "config.json", revision="v1", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert json.loads(open(v1).read())["hidden_size"] == 4


def test_ranged_reads_of_a_virtual_50_gb_file(hub):
    content, _ = safetensors_header({"w": ("BF16", [25 * GB])})
    hub.add_repo(FakeRepo("org/huge", {"model.safetensors": FakeFile(content, size=len(content) + 50 * GB)}))
    fs = HfFileSystem(endpoint=hub.endpoint)

    started = time.monotonic()
    with fs.open("org/huge/model.safetensors", "rb", block_size=1024) as f:
        head = f.read(8 + 16)
        f.seek(-4, 2)
        tail = f.read()

    assert head == content[:24] and tail == b"\0" * 4
    assert fs.size("org/huge/model.safetensors") == len(content) + 50 * GB
    assert time.monotonic() - started < 2
    assert all("Range" in r.headers for r in hub.requests if r.method == "GET" and "/resolve/" in r.path)


def test_list_models_search_author_sort_limit(hub, api):
    repos = [
        hub.add_repo(FakeRepo(f"mlx-community/{name}", downloads=downloads, tags=["mlx"]))
        for name, downloads in [("alpha-mlx", 5), ("beta-MLX-4bit", 50), ("gamma", 500)]
    ]
    hub.add_repo(FakeRepo("other/delta-mlx", downloads=5000))
    hub.add_repo(FakeRepo("mlx-community/hidden-mlx", private=True))

    def ids(**kwargs):
        return [m.id for m in api.list_models(**kwargs)]

    # Search is a case-insensitive substring of the whole id; private repos are not listed.
    assert ids(search="MLX", sort="downloads") == [
        "other/delta-mlx",
        "mlx-community/gamma",
        "mlx-community/beta-MLX-4bit",
        "mlx-community/alpha-mlx",
    ]
    assert ids(author="mlx-community", sort="downloads", limit=2) == [
        "mlx-community/gamma",
        "mlx-community/beta-MLX-4bit",
    ]
    assert ids(filter="mlx", search="delta") == []  # other/delta-mlx lacks the tag
    full = next(iter(api.list_models(search="gamma", full=True)))
    assert full.sha == repos[2].sha and full.siblings == []


def test_list_models_paginates_with_link_headers(hub, api):
    hub.page_size = 2
    for i in range(5):
        hub.add_repo(FakeRepo(f"org/model-{i}", tags=["mlx", "4-bit"]))

    models = list(api.list_models(filter=["mlx", "4-bit"]))

    assert [m.id for m in models] == [f"org/model-{i}" for i in range(5)]
    pages = [r for r in hub.requests if r.path == "/api/models"]
    assert len(pages) == 3
    assert pages[-1].query.getall("filter") == ["mlx", "4-bit"]  # the next link keeps the query


def test_tree_and_paths_info(hub, api):
    hub.add_repo(FakeRepo("org/tree", {"a.json": "{}", "sub/b.gguf": FakeFile(b"GGUF", size=10), "sub/deep/c": "x"}))

    top = {entry.path for entry in api.list_repo_tree("org/tree")}
    files = api.list_repo_files("org/tree")
    gguf, sub = api.get_paths_info("org/tree", ["sub/b.gguf", "sub", "nope"])

    assert top == {"a.json", "sub"}
    assert sorted(files) == ["a.json", "sub/b.gguf", "sub/deep/c"]
    assert (gguf.size, gguf.lfs.size) == (10, 10)
    assert sub.path == "sub" and sub.tree_id


def test_snapshot_download_allow_patterns(hub, tmp_path):
    repo = hub.add_repo(small_model())

    folder = snapshot_download(
        repo.repo_id,
        revision="main",
        allow_patterns=["*.json", "*.safetensors"],
        endpoint=hub.endpoint,
        cache_dir=tmp_path,
    )

    tensors = load_file(f"{folder}/model.safetensors")
    assert tensors["embed"].shape == (4, 8) and tensors["embed"].dtype == np.float32
    assert not tensors["embed"].any()
    assert json.loads(open(f"{folder}/config.json").read()) == CONFIG
    assert hub.count(path_contains="README.md") == 0


def test_injected_failures(hub, api):
    hub.add_repo(small_model())
    hub.fail_next(503, path_contains="/api/models/org/small")
    hub.fail_next(429, retry_after=7)

    with pytest.raises(HfHubHTTPError) as unavailable:
        api.model_info("org/small")
    with pytest.raises(HfHubHTTPError) as limited:
        api.model_info("org/small")

    assert unavailable.value.response.status_code == 503
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert api.model_info("org/small").id == "org/small"
    assert hub.count("GET", "/api/models/org/small") == 3


def test_latency_applies_to_every_response(hub, api):
    hub.add_repo(small_model())
    hub.latency = 0.3

    started = time.monotonic()
    api.model_info("org/small")

    assert time.monotonic() - started >= 0.3


async def test_usable_from_async_code(hub):
    hub.add_repo(small_model())
    url = f"{hub.endpoint}/org/small/resolve/main/model.safetensors"

    async with aiohttp.ClientSession() as session, session.get(url, headers={"Range": "bytes=0-7"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"].startswith("bytes 0-7/")
        header_size = int.from_bytes(await response.read(), "little")

    assert header_size % 8 == 0
    hub.reset_log()
    assert hub.requests == []
