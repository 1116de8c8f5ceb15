"""The ACL check of the ZooKeeper store's setup, against a fake client (the real ensemble's tests
are tests/contract/test_zookeeper_acls.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kazoo.security import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_digest_acl

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.zookeeper_session import ZooKeeperSession


class _Answer:
    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> Any:
        return self.value


class _Client:
    def __init__(self, acls: dict[str, list[Any]]) -> None:
        self.acls = acls

    def get_acls_async(self, path: str) -> _Answer:
        return _Answer((self.acls[path], None))


def _session(acls: dict[str, list[Any]], auth: str = "sfc:pw") -> ZooKeeperSession:
    session = ZooKeeperSession("127.0.0.1:1", "/sfc", 10.0, 1.0, auth=auth)
    session.client = _Client(acls)
    return session


OURS = make_digest_acl("sfc", "pw", all=True)


def test_only_our_digest_user_may_write() -> None:
    _session({"/sfc": [OURS, *READ_ACL_UNSAFE], "/sfc/placement": [OURS]})._check_acls(["/sfc", "/sfc/placement"])


@pytest.mark.parametrize(
    "foreign", [OPEN_ACL_UNSAFE[0], make_digest_acl("eve", "x", all=True), make_digest_acl("eve", "x", delete=True)]
)
def test_a_znode_another_client_may_change_is_refused(foreign: Any) -> None:
    session = _session({"/sfc": [OURS], "/sfc/epoch": [OURS, foreign]})
    with pytest.raises(MetastoreError, match=r"^znode /sfc/epoch lets .* write it"):
        session._check_acls(["/sfc", "/sfc/epoch"])


def test_without_auth_nothing_is_checked_and_one_warning_is_given(caplog: pytest.LogCaptureFixture) -> None:
    session = _session({}, auth="")
    with caplog.at_level(logging.WARNING):
        session._check_acls(["/sfc"])
        session._check_acls(["/sfc"])
    assert [r.getMessage() for r in caplog.records] == [session.exposure()]
