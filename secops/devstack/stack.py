"""Local development/test stack: a real Elasticsearch node (integ-test-zip from Maven Central) and redis-server.

The distribution is fetched once with the ordinary Maven client and cached outside the repository
(``paths.cache_dir``). Elasticsearch refuses to run as root, so as root the node runs as the
unprivileged system user ``secops`` (created on first use) with its data under a directory it owns.
Production runs the full distribution from docker-compose.yml instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from secops.config import cache_home
from secops.es.client import local_stack_file, local_stack_urls

# The newest integ-test-zip published on Maven Central that this project runs (needs Java >= 21).
ES_VERSION = "9.2.0"
ES_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
ES_MIN_JAVA = 21
SERVICE_USER = "secops"


class StackError(RuntimeError):
    """The local stack cannot be started or reached; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _java_major(java_home: Path) -> int | None:
    release = java_home / "release"
    if not release.is_file():
        return None
    for line in release.read_text(errors="replace").splitlines():
        if line.startswith("JAVA_VERSION="):
            version = line.split("=", 1)[1].strip('"')
            head = version.split(".")[0]
            return int(head) if head.isdigit() else None
    return None


def find_java(min_major: int = ES_MIN_JAVA) -> Path:
    """A JDK home new enough for Elasticsearch: ES_JAVA_HOME, JAVA_HOME, then /usr/lib/jvm/*."""
    candidates = [os.environ.get("ES_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates += [str(p) for p in sorted(jvm.iterdir(), reverse=True) if not p.is_symlink()]
    seen = []
    for c in candidates:
        if not c:
            continue
        home = Path(c)
        major = _java_major(home)
        seen.append(f"{home} ({major or '?'})")
        if major and major >= min_major and (home / "bin" / "java").exists():
            return home
    raise StackError(
        f"Elasticsearch {ES_VERSION} needs Java >= {min_major}; found: {', '.join(seen) or 'none'}. "
        "Set ES_JAVA_HOME to a newer JDK."
    )


def ensure_distribution(dist_root: Path | None = None) -> Path:
    """Return the unpacked Elasticsearch home, fetching the pinned zip with mvn on first use."""
    # as root: /var/cache/secops, readable by the unprivileged service user (root's home is private)
    dist_root = dist_root or cache_home()
    home = dist_root / f"elasticsearch-{ES_VERSION}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    dist_root.mkdir(parents=True, exist_ok=True)
    zip_path = dist_root / f"elasticsearch-{ES_VERSION}.zip"
    if not zip_path.exists():
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError("Maven (mvn) is needed once to fetch Elasticsearch; install the 'maven' package")
        cmd = [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ES_ARTIFACT}",
               f"-DoutputDirectory={dist_root}", "-Dmdep.overWriteReleases=true"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not zip_path.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise StackError(f"mvn could not fetch {ES_ARTIFACT}: {' | '.join(tail)}")
    tmp = dist_root / f".unpack-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = zf.extract(info, tmp)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(target, mode & 0o777)
    tmp.joinpath(home.name).rename(home)
    shutil.rmtree(tmp, ignore_errors=True)
    return home


def _service_user() -> pwd.struct_passwd | None:
    """The account the node runs as: ourselves, or the 'secops' system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(SERVICE_USER)


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _signal(group: int | None, pids: tuple[int | None, ...], sig: int) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
    for pid in pids:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _terminate(group: int | None, timeout: float = 30.0, sig: int = signal.SIGTERM, *,
               pids: tuple[int | None, ...] = ()) -> None:
    """Signal a process group (and pids that may have left it); return once every one of them is gone,
    escalating to SIGKILL after ``timeout`` seconds."""
    watched = [p for p in (group, *pids) if p]
    _signal(group, pids, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in watched):
        time.sleep(0.2)
    if any(_pid_alive(p) for p in watched):
        _signal(group, pids, signal.SIGKILL)
        while any(_pid_alive(p) for p in watched):
            time.sleep(0.1)


@dataclass
class ElasticsearchNode:
    """One Elasticsearch node on 127.0.0.1 with its own data directory.

    Alone (no ``seed_hosts``) it is a single-node cluster; with ``seed_hosts`` and ``initial_masters`` it
    joins (or bootstraps) a cluster over its transport port. ``pid`` is the server JVM's (from the node's
    own pid file); ``group`` is the process group of the launcher (``runuser`` as root, then the CLI JVM
    that starts the server), signalled as a whole.
    """

    base_dir: Path
    port: int = 0
    heap: str = "1g"
    pid: int | None = None
    home: Path | None = None
    group: int | None = None
    name: str = "secops-local-1"
    cluster_name: str = "secops-local"
    transport_port: int = 0
    seed_hosts: list[str] = field(default_factory=list)
    initial_masters: list[str] = field(default_factory=list)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def transport_address(self) -> str:
        return f"127.0.0.1:{self.transport_port}"

    def _get(self, path: str, timeout: float = 2) -> dict | list | None:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as resp:  # noqa: S310 (loopback)
                return json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _health(self) -> dict | None:
        health = self._get("/_cluster/health")
        return health if isinstance(health, dict) else None

    def running(self) -> bool:
        return _pid_alive(self.pid) and self._health() is not None

    def settings(self, data: Path, logs: Path) -> dict[str, object]:
        """The node's -E settings: single-node discovery alone, seed hosts and initial masters in a cluster."""
        self.port = self.port or free_port()
        self.transport_port = self.transport_port or free_port()
        settings: dict[str, object] = {
            "cluster.name": self.cluster_name,
            "node.name": self.name,
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "xpack.security.enabled": "false",
            "path.data": data,
            "path.logs": logs,
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.destructive_requires_name": "false",
        }
        if self.seed_hosts:
            settings["discovery.seed_hosts"] = ",".join(self.seed_hosts)
            settings["cluster.initial_master_nodes"] = ",".join(self.initial_masters)
        else:
            settings["discovery.type"] = "single-node"
        return settings

    def launch(self) -> ElasticsearchNode:
        """Start the JVM without waiting (cluster members must all be launched before any is ready)."""
        self.home = self.home or ensure_distribution()
        java = find_java()
        user = _service_user()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        conf, data, logs = self.base_dir / "config", self.base_dir / "data", self.base_dir / "logs"
        if not conf.exists():
            shutil.copytree(self.home / "config", conf)
        data.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        _chown_tree(self.base_dir, user)
        pid_file = self.base_dir / "elasticsearch.pid"
        pid_file.unlink(missing_ok=True)
        cmd = [str(self.home / "bin" / "elasticsearch"), "-p", str(pid_file),
               *[f"-E{k}={v}" for k, v in self.settings(data, logs).items()]]
        if user is not None:
            cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
        env = dict(os.environ, ES_JAVA_HOME=str(java), ES_PATH_CONF=str(conf),
                   ES_JAVA_OPTS=f"-Xms{self.heap} -Xmx{self.heap}")
        env.pop("JAVA_HOME", None)
        out = open(self.base_dir / "stdout.log", "ab")  # noqa: SIM115 (owned by the child)
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        self.pid = self.group = self._proc.pid
        return self

    def wait_ready(self, timeout: float = 180.0) -> ElasticsearchNode:
        """Wait until the node answers cluster health (green or yellow) and has written its pid file."""
        pid_file = self.base_dir / "elasticsearch.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(f"Elasticsearch {self.name} exited with {self._proc.returncode}: {self.log_tail()}")
            health = self._health()
            if health and health.get("status") in ("green", "yellow") and pid_file.exists():
                self.pid = int(pid_file.read_text().strip() or self.pid)
                return self
            time.sleep(0.5)
        self.stop()
        raise StackError(f"Elasticsearch {self.name} did not become ready in {timeout:.0f}s: {self.log_tail()}")

    def start(self, timeout: float = 180.0) -> ElasticsearchNode:
        if self.running():
            return self
        return self.launch().wait_ready(timeout)

    def log_tail(self, lines: int = 5) -> str:
        path = self.base_dir / "stdout.log"
        if not path.exists():
            return "(no log)"
        text = path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Stop the node and return once the server JVM has exited (its data-directory lock is free)."""
        if self.pid or self.group:
            _terminate(self.group, pids=(self.pid,))
        self.pid = self.group = None

    def kill(self) -> None:
        """SIGKILL the node, as a crash would (for durability tests)."""
        if self.pid or self.group:
            _terminate(self.group, timeout=0, sig=signal.SIGKILL, pids=(self.pid,))
        self.pid = self.group = None


CLUSTER_HEAP = "320m"  # per node: three nodes share 2 cores and the memory of a workstation


@dataclass
class ClusterNodeInfo:
    """One row of `secops stack status` for a cluster member."""

    name: str
    url: str
    roles: str
    master: bool


class ElasticsearchCluster:
    """``size`` Elasticsearch nodes on loopback forming one cluster: each with its own data path, HTTP and
    transport port, all seeded with each other's transport addresses and all master-eligible data nodes
    (``cluster.initial_master_nodes`` names all of them, so any two of three keep a quorum)."""

    def __init__(self, base_dir: Path, size: int = 3, *, heap: str = CLUSTER_HEAP,
                 cluster_name: str = "secops-cluster", nodes: list[ElasticsearchNode] | None = None) -> None:
        if size < 2:
            raise StackError("a cluster needs at least 2 nodes (one node runs with single-node discovery)")
        self.base_dir = base_dir
        if nodes is None:
            names = [f"{cluster_name}-{i + 1}" for i in range(size)]
            nodes = [ElasticsearchNode(base_dir / name, heap=heap, name=name, cluster_name=cluster_name,
                                       port=free_port(), transport_port=free_port()) for name in names]
        seeds = [n.transport_address for n in nodes]
        for n in nodes:
            n.seed_hosts, n.initial_masters = seeds, [m.name for m in nodes]
        self.nodes = nodes

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def running(self) -> bool:
        return all(n.running() for n in self.nodes)

    def start(self, timeout: float = 300.0) -> ElasticsearchCluster:
        """Launch every stopped node, then wait until all have joined (``number_of_nodes`` == size)."""
        for n in self.nodes:
            if not n.running():
                n.launch()
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            n.wait_ready(max(1.0, deadline - time.monotonic()))
        self.wait_health("yellow", timeout=max(1.0, deadline - time.monotonic()))
        return self

    def live(self) -> ElasticsearchNode:
        for n in self.nodes:
            if n.running():
                return n
        raise StackError("no node of the cluster answers")

    def wait_health(self, status: str = "green", *, nodes: int | None = None, timeout: float = 120.0) -> dict:
        """Block until the cluster has ``nodes`` members (default: all) and at least ``status``."""
        want = nodes or len(self.nodes)
        deadline = time.monotonic() + timeout
        health: dict | None = None
        while time.monotonic() < deadline:
            for n in self.nodes:
                if not _pid_alive(n.pid):
                    continue
                health = n._get(f"/_cluster/health?wait_for_status={status}&wait_for_nodes={want}&timeout=2s",
                                timeout=5)
                if isinstance(health, dict) and not health.get("timed_out", True):
                    return health
            time.sleep(0.5)
        raise StackError(f"cluster not {status} with {want} nodes in {timeout:.0f}s: {health}")

    def describe(self) -> tuple[dict | None, list[ClusterNodeInfo]]:
        """(cluster health, one row per node that answers) as seen from any live node."""
        for n in self.nodes:
            if not _pid_alive(n.pid):
                continue
            rows = n._get("/_cat/nodes?format=json&h=name,node.role,master,http_address")
            if isinstance(rows, list):
                infos = [ClusterNodeInfo(r["name"], f"http://{r['http_address']}", r["node.role"], r["master"] == "*")
                         for r in rows]
                return n._health(), sorted(infos, key=lambda i: i.name)
        return None, []

    def master(self) -> ElasticsearchNode:
        _, infos = self.describe()
        elected = next((i.name for i in infos if i.master), None)
        for n in self.nodes:
            if n.name == elected:
                return n
        raise StackError("no elected master")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1 with append-only persistence, so queued tasks survive a restart."""

    base_dir: Path
    port: int = 0
    pid: int | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        return _pid_alive(self.pid) and self._ping()

    def start(self, timeout: float = 20.0) -> RedisServer:
        if self.running():
            return self
        exe = shutil.which("redis-server")
        if not exe:
            raise StackError("redis-server not found; install Debian's 'redis-server' package")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.base_dir),
               "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
               "--logfile", str(self.base_dir / "redis.log"), *self.extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"redis-server exited with {proc.returncode}; see {self.base_dir / 'redis.log'}")
            if self._ping():
                return self
            time.sleep(0.1)
        raise StackError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.pid:
            _terminate(self.pid, timeout=10)
        self.pid = None

    def kill(self) -> None:
        if self.pid:
            _terminate(self.pid, timeout=0, sig=signal.SIGKILL)
        self.pid = None


class LocalStack:
    """The persistent development stack behind `secops stack up|status|down`: Redis plus one Elasticsearch
    node (the default) or a cluster of ``--nodes N`` (data under ``stack/es-cluster``, kept across restarts)."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.state_file = local_stack_file(state_dir)
        self.dir = self.state_file.parent

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _load(self) -> tuple[ElasticsearchNode | ElasticsearchCluster, RedisServer]:
        state = self._state()
        es, rd = state.get("elasticsearch", {}), state.get("redis", {})
        redis = RedisServer(self.dir / "redis", port=rd.get("port", 0), pid=rd.get("pid"))
        if members := es.get("nodes"):
            nodes = [ElasticsearchNode(self.dir / "es-cluster" / m["name"], port=m["port"], pid=m.get("pid"),
                                       group=m.get("group"), name=m["name"], cluster_name=es["cluster_name"],
                                       transport_port=m["transport_port"], heap=es.get("heap", CLUSTER_HEAP))
                     for m in members]
            return ElasticsearchCluster(self.dir / "es-cluster", len(nodes), nodes=nodes), redis
        return (ElasticsearchNode(self.dir / "elasticsearch", port=es.get("port", 0), pid=es.get("pid"),
                                  group=es.get("group")), redis)

    def _save(self, es: ElasticsearchNode | ElasticsearchCluster, rd: RedisServer) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if isinstance(es, ElasticsearchCluster):
            es_state: dict = {"url": es.urls[0], "urls": es.urls, "cluster_name": es.nodes[0].cluster_name,
                              "heap": es.nodes[0].heap,
                              "nodes": [{"name": n.name, "port": n.port, "transport_port": n.transport_port,
                                         "pid": n.pid, "group": n.group} for n in es.nodes]}
        else:
            es_state = {"port": es.port, "pid": es.pid, "group": es.group, "url": es.url, "urls": [es.url]}
        state = {"elasticsearch": es_state, "redis": {"port": rd.port, "pid": rd.pid, "url": rd.url}}
        self.state_file.write_text(json.dumps(state, indent=2))

    def up(self, nodes: int = 1) -> tuple[ElasticsearchNode | ElasticsearchCluster, RedisServer]:
        es, rd = self._load()
        size = len(es.nodes) if isinstance(es, ElasticsearchCluster) else 1
        if size != nodes:
            if es.running() if size == 1 else any(n.running() for n in es.nodes):  # type: ignore[union-attr]
                raise StackError(f"the stack runs {size} Elasticsearch node(s); `secops stack down` first")
            es = ElasticsearchCluster(self.dir / "es-cluster", nodes) if nodes > 1 else \
                ElasticsearchNode(self.dir / "elasticsearch")
        # Keep the previous ports so URLs in use stay valid across restarts.
        for node in es.nodes if isinstance(es, ElasticsearchCluster) else [es]:
            if not node.running() and node.port and not _port_free(node.port):
                node.port = 0 if isinstance(es, ElasticsearchNode) else free_port()
        if not rd.running() and rd.port and not _port_free(rd.port):
            rd.port = 0
        rd.start()
        es.start()
        self._save(es, rd)
        return es, rd

    def status(self) -> dict[str, dict]:
        es, rd = self._load()
        redis = {"url": rd.url if rd.port else None, "running": rd.running(), "pid": rd.pid}
        if isinstance(es, ElasticsearchCluster):
            health, infos = es.describe()
            members = {i.name: i for i in infos}
            nodes = [{"name": n.name, "url": n.url, "running": n.running(), "pid": n.pid,
                      "roles": members[n.name].roles if n.name in members else None,
                      "master": members[n.name].master if n.name in members else False} for n in es.nodes]
            return {"elasticsearch": {"url": es.urls[0], "running": any(n["running"] for n in nodes),
                                      "pid": None, "health": (health or {}).get("status"), "nodes": nodes},
                    "redis": redis}
        health = es._health() if es.port else None
        return {"elasticsearch": {"url": es.url if es.port else None, "running": es.running(), "pid": es.pid,
                                  "health": (health or {}).get("status")},
                "redis": redis}

    def down(self) -> None:
        es, rd = self._load()
        es.stop()
        rd.stop()
        self._save(es, rd)

    def urls(self) -> tuple[str | None, str | None]:
        """URLs recorded by `stack up`, used when the configuration names no hosts."""
        return local_stack_urls(self.state_dir)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
