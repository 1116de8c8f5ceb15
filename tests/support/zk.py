"""A real ZooKeeper ensemble with temp data dirs (Debian's zookeeper jars).

On loopback ports by default; the lab runs it inside its metastore's network namespace on that
namespace's address instead (``bind_address``, ``netns``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.netns import in_netns
from tests.support.ports import free_ports

JARS = [
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-handler.jar",
    "netty-transport.jar",
    "netty-transport-native-unix-common.jar",
    "netty-transport-native-epoll.jar",
    "netty-buffer.jar",
    "netty-common.jar",
    "slf4j-api.jar",
    "slf4j-log4j12.jar",
    "log4j-1.2.jar",
    "commons-cli.jar",
    "metrics-core.jar",
    "snappy-java.jar",
]
JAVA_DIR = Path("/usr/share/java")


def zookeeper_available() -> bool:
    return shutil.which("java") is not None and (JAVA_DIR / "zookeeper.jar").exists()


@dataclass
class ZkServer:
    """One ensemble member: its id, client port, config and process."""

    sid: int
    client_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None
    bind_address: str = "127.0.0.1"
    secure_port: int | None = None  # TLS client port (start_ensemble(tls=...))

    @property
    def address(self) -> str:
        return f"{self.bind_address}:{self.client_port}"

    @property
    def secure_address(self) -> str:
        assert self.secure_port is not None, "started without tls"
        return f"{self.bind_address}:{self.secure_port}"


@dataclass
class Ensemble:
    """Three (or N) ZooKeeper servers; start, stop, freeze and thaw each one."""

    servers: list[ZkServer]
    base: Path
    log_files: list[Path] = field(default_factory=list)
    netns: str | None = None  # the network namespace the servers run in (None: this one)

    @property
    def hosts(self) -> str:
        return ",".join(s.address for s in self.servers)

    @property
    def secure_hosts(self) -> str:
        """The connection string of the TLS client ports."""
        return ",".join(s.secure_address for s in self.servers)

    def start(self, i: int) -> None:
        server = self.servers[i]
        if server.process is not None and server.process.poll() is None:
            return
        classpath = ":".join(str(JAVA_DIR / jar) for jar in JARS if (JAVA_DIR / jar).exists())
        log = (server.base / "server.log").open("ab")
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []  # execs java: same pid
        server.process = subprocess.Popen(
            [
                *wrap,
                "java",
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{self.base / 'log4j.properties'}",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                classpath,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(server.base / "zoo.cfg"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, i: int) -> None:
        process = self.servers[i].process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(timeout=30)

    def freeze(self, i: int) -> None:
        process = self.servers[i].process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        process = self.servers[i].process
        assert process is not None
        os.kill(process.pid, signal.SIGCONT)

    def serving(self, i: int) -> bool:
        """Whether server i answers ``srvr`` as a member of a quorum."""
        server = self.servers[i]

        def ask() -> bytes:
            with socket.create_connection((server.bind_address, server.client_port), timeout=1) as sock:
                sock.sendall(b"srvr")
                return sock.recv(4096)

        try:
            data = in_netns(self.netns, ask)
        except OSError:
            return False
        return b"Mode: leader" in data or b"Mode: follower" in data

    def wait_quorum(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        running = [i for i, s in enumerate(self.servers) if s.process is not None and s.process.poll() is None]
        while time.monotonic() < deadline:
            if sum(self.serving(i) for i in running) == len(running) and len(running) * 2 > len(self.servers):
                return
            time.sleep(0.2)
        logs = "\n".join((s.base / "server.log").read_text(errors="replace")[-1500:] for s in self.servers)
        raise RuntimeError(f"ZooKeeper ensemble did not form a quorum in {timeout:g}s:\n{logs}")


@contextlib.contextmanager
def start_ensemble(
    size: int = 3,
    tick_ms: int = 200,
    bind_address: str = "127.0.0.1",
    netns: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[Ensemble]:
    """Start ``size`` servers on free ports; everything is removed again on exit.

    Every port (client, quorum, election) is bound to ``bind_address``; with ``netns`` the
    servers run inside that network namespace, whose own address ``bind_address`` is. With
    ``tls`` = (server PEM with key and certificate, CA PEM) each server also serves a TLS client
    port that requires a client certificate signed by that CA (Netty, PEM stores).
    """
    base = Path(tempfile.mkdtemp(prefix="sfc-zk-"))
    ports = free_ports(4 * size)  # free here; a namespace of the tests' own has nothing on them
    servers = [
        ZkServer(
            i + 1,
            ports[4 * i],
            base / f"s{i + 1}",
            bind_address=bind_address,
            secure_port=ports[4 * i + 3] if tls else None,
        )
        for i in range(size)
    ]
    members = "\n".join(
        f"server.{s.sid}={bind_address}:{ports[4 * i + 1]}:{ports[4 * i + 2]}" for i, s in enumerate(servers)
    )
    secure = ""
    if tls:
        server_pem, ca_pem = tls
        secure = (
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
            f"ssl.keyStore.location={server_pem}\nssl.keyStore.type=PEM\n"
            f"ssl.trustStore.location={ca_pem}\nssl.trustStore.type=PEM\n"
            "ssl.clientAuth=need\n"
        )
    (base / "log4j.properties").write_text(
        "log4j.rootLogger=WARN, CONSOLE\n"
        "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.CONSOLE.layout.ConversionPattern=%d %p [%t] %c{1}: %m%n\n"
    )
    for server in servers:
        (server.base / "data").mkdir(parents=True)
        (server.base / "data" / "myid").write_text(f"{server.sid}\n")
        (server.base / "zoo.cfg").write_text(
            f"tickTime={tick_ms}\ninitLimit=20\nsyncLimit=10\n"
            f"minSessionTimeout={2 * tick_ms}\nmaxSessionTimeout=60000\n"
            f"dataDir={server.base / 'data'}\nclientPort={server.client_port}\nclientPortAddress={bind_address}\n"
            "admin.enableServer=false\n4lw.commands.whitelist=srvr,ruok,stat\n"
            "standaloneEnabled=false\nreconfigEnabled=false\n"
            + (
                f"secureClientPort={server.secure_port}\nsecureClientPortAddress={bind_address}\n{secure}"
                if tls
                else ""
            )
            + f"{members}\n"
        )
    ensemble = Ensemble(servers, base, netns=netns)
    try:
        for i in range(size):
            ensemble.start(i)
        ensemble.wait_quorum()
        yield ensemble
    finally:
        for i in range(size):
            with contextlib.suppress(Exception):
                ensemble.stop(i)
        shutil.rmtree(base, ignore_errors=True)


def expire_session(hosts: str, client_id: tuple[int, bytes], timeout: float) -> None:
    """Expire a session on the server, as a partition longer than its timeout would.

    A second connection with the same session id and password closes it. Its connect can race
    the original client's own traffic, so it is retried a few times.
    """
    from kazoo.client import KazooClient

    for attempt in range(5):
        clone = KazooClient(hosts=hosts, client_id=client_id, timeout=timeout)
        try:
            clone.start(timeout=10)
            clone.stop()
            return
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                clone.stop()  # a start that failed leaves it half open: close needs a stop first
            with contextlib.suppress(Exception):
                clone.close()
