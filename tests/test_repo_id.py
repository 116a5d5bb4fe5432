import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.repo_id import RepoIdError, RepoRef, echo, is_default_branch, parse_repo

part = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True).filter(
    lambda s: ".." not in s and "--" not in s
)
revision = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True).filter(lambda s: ".." not in s)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mlx-community/Qwen3-0.6B-4bit", RepoRef("mlx-community/Qwen3-0.6B-4bit")),
        ("  mistralai/Mistral-7B-v0.1  ", RepoRef("mistralai/Mistral-7B-v0.1")),
        ("https://huggingface.co/mistralai/Mistral-7B-v0.1", RepoRef("mistralai/Mistral-7B-v0.1")),
        ("https://huggingface.co/mistralai/Mistral-7B-v0.1/tree/main", RepoRef("mistralai/Mistral-7B-v0.1", "main")),
        ("https://huggingface.co/org/name/blob/dev/config.json", RepoRef("org/name", "dev")),
        ("https://huggingface.co/org/name/resolve/abc123/model.safetensors", RepoRef("org/name", "abc123")),
        ("huggingface.co/org/name", RepoRef("org/name")),
        ("https://hf.co/org/name?library=mlx#top", RepoRef("org/name")),
        ("https://huggingface.co/models/org/name", RepoRef("org/name")),
        ("<https://huggingface.co/org/name>", RepoRef("org/name")),
        ("org/name@v1.0", RepoRef("org/name", "v1.0")),
        # Legacy ids from before organisations: the hub redirects them to their current home.
        ("gpt2", RepoRef("gpt2")),
        ("bert-base-uncased@main", RepoRef("bert-base-uncased", "main")),
        # Invisible characters that come along when an id is copied from a web page.
        ("\u200eorg/name\u200f", RepoRef("org/name")),
        ("\ufefforg/na\u200bme\u2060", RepoRef("org/name")),
        ("\u00a0https://huggingface.co/org/name\u202c ", RepoRef("org/name")),
    ],
)
def test_accepts_ids_and_urls(text, expected):
    assert parse_repo(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "model id"),
        ("org/name.git", "without `.git`"),
        ("https://huggingface.co/org/name.git", "the model id is `org/name`"),
        ("org/-name", "org/name"),
        ("../../etc/passwd", "org/name"),
        ("/Users/me/models/llama", "org/name"),
        ("org/na me", "org/name"),
        ("org/name/extra", "org/name"),
        ("a--b/c", "org/name"),
        ("https://github.com/ml-explore/mlx-lm", "huggingface.co"),
        ("https://huggingface.co/datasets/org/name", "dataset"),
        ("https://huggingface.co/org", "does not point at a model"),
        ("<@123456789> hi", "org/name"),
        ("x" * 600, "too long"),
    ],
)
def test_rejects_with_a_friendly_message(text, words):
    with pytest.raises(RepoIdError) as e:
        parse_repo(text)
    assert words in str(e.value)


def test_explicit_revision_wins_over_url():
    assert parse_repo("https://huggingface.co/o/n/tree/dev", revision="main") == RepoRef("o/n", "main")


def test_bad_revision_is_rejected():
    with pytest.raises(RepoIdError, match="revision"):
        parse_repo("o/n", revision="../../x")


@given(org=part, name=part)
def test_plain_ids_round_trip(org, name):
    assert parse_repo(f"{org}/{name}") == RepoRef(f"{org}/{name}")


@given(org=part, name=part, rev=revision, form=st.sampled_from(["tree", "blob", "resolve"]))
def test_urls_round_trip(org, name, rev, form):
    tail = "" if form == "tree" else "/config.json"
    ref = parse_repo(f"https://huggingface.co/{org}/{name}/{form}/{rev}{tail}")
    assert ref == RepoRef(f"{org}/{name}", rev)


@given(st.text(max_size=200))
def test_never_crashes_and_never_returns_a_path(text):
    try:
        ref = parse_repo(text)
    except RepoIdError:
        return
    assert all(ref.repo_id.split("/")) and ref.repo_id.count("/") <= 1
    assert not ref.repo_id.startswith((".", "/", "~")) and not ref.repo_id.endswith(".git")
    assert ".." not in ref.repo_id and "\\" not in ref.repo_id


def test_default_branch_is_no_revision_or_main():
    assert is_default_branch(None) and is_default_branch(parse_repo("https://huggingface.co/o/n/tree/main").revision)
    assert not is_default_branch("v2") and not is_default_branch("0123abcd")


def test_echoed_input_is_cut_and_cleaned():
    assert echo("\u200eorg/na me") == "'org/na me'"
    long = echo("x" * 10_000)
    assert len(long) == 82 and long.endswith("…'")  # 80 characters and the quotes
