"""The one key-file reader behind the history store, the scan state and the proxy journal."""

from __future__ import annotations

import os
import stat

import pytest

from mailguard import keyfile
from mailguard.archive.state import StateError
from mailguard.archive.state import _key as state_key
from mailguard.errors import ConfigError
from mailguard.proxy.journal import _load_key as journal_key


def test_made_once_0600_whatever_the_umask_and_then_read_back(tmp_path):
    path = tmp_path / "store.key"
    old = os.umask(0)
    try:
        first = keyfile.read_or_create(path, "the test key")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfile.read_or_create(path, "the test key") == first
    assert len(first) == keyfile.KEY_BYTES
    with pytest.raises(keyfile.KeyFileError, match="cannot create"):
        keyfile.create(path, "the test key")  # never overwritten
    assert keyfile.read(path, "the test key") == first


@pytest.mark.parametrize("load, error", [(state_key, StateError), (journal_key, ConfigError)])
def test_every_store_refuses_a_key_others_may_read(tmp_path, load, error):
    path = tmp_path / "store.key"
    secret = load(path)
    path.chmod(0o640)
    with pytest.raises(error, match="chmod 600") as refused:
        load(path)
    assert secret.hex() not in str(refused.value)


@pytest.mark.parametrize("load, error", [(state_key, StateError), (journal_key, ConfigError)])
def test_a_fifo_in_place_of_the_key_is_an_error_not_a_hang(tmp_path, load, error):
    path = tmp_path / "store.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(error, match="not a regular file"):
        load(path)


def test_a_malformed_key_is_refused(tmp_path):
    path = tmp_path / "store.key"
    path.write_text("not hex\n")
    path.chmod(0o600)
    with pytest.raises(keyfile.KeyFileError, match="malformed"):
        keyfile.read_or_create(path, "the test key")
