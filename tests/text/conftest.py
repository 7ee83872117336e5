"""One conversion per test session, into a private cache, shared by every text test."""

import pytest

from qtts.text.tokenizer import load_text_tokenizer, write_tokenizer_folder


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("qtts-cache")
        mp.setenv("QTTS_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def tok(cache_dir):
    return load_text_tokenizer()


@pytest.fixture(scope="session")
def model_folder(cache_dir, tmp_path_factory):
    """A model folder holding the written tokenizer files, as a test checkpoint would."""
    return write_tokenizer_folder(tmp_path_factory.mktemp("model"))
