"""A real Airflow 3 deployment on 127.0.0.1 for integration tests and by hand.

PostgreSQL metadata database (a fresh database per run on 127.0.0.1:5432, user ``postgres``, trust auth),
Redis broker (a Redis DB index claimed per run on 127.0.0.1:6379), CeleryExecutor, and the scheduler,
dag-processor, api-server and N Celery workers as subprocesses (each its own process group), logs under the
run directory. The DAG is submitted through the public REST API with a JWT from the api-server, as a user would.

By hand::

    python -m tests.integration.harness up --workers 2     # prints the URL and admin password; Ctrl-C stops all

In tests::

    with AirflowDeployment(workers=2, env={"AIRFLOW__OSML__WORK_STORE": ...}) as airflow:
        run_id = airflow.trigger("osml_model_runner", conf)
        assert airflow.wait("osml_model_runner", run_id) == "success"
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("OSML_IT_POSTGRES", "postgres@127.0.0.1:5432")  # user@host:port, trust auth
REDIS = os.environ.get("OSML_IT_REDIS", "127.0.0.1:6379")
CLAIM_KEY = "osml-harness:claim"
FINAL_STATES = {"success", "failed"}

# Settings that make a small deployment react fast; a real one keeps Airflow's defaults (see docs/deploy-celery.md).
FAST_DEFAULTS = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
    "AIRFLOW__API__WORKERS": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _split(address: str) -> tuple[str, str, int]:
    user, _, hostport = address.rpartition("@")
    host, _, port = hostport.partition(":")
    return user, host, int(port)


def services_available() -> str | None:
    """None when PostgreSQL and Redis answer on 127.0.0.1, else the reason (for pytest.skip).

    With ``OSML_IT_REQUIRED=1`` (CI) a missing service is an error instead of a reason to skip.
    """
    reason = _missing_service()
    if reason and os.environ.get("OSML_IT_REQUIRED") == "1":
        raise RuntimeError(f"OSML_IT_REQUIRED=1 but {reason}")
    return reason


def _missing_service() -> str | None:
    for name, address in (("PostgreSQL", POSTGRES), ("Redis", REDIS)):
        _, host, port = _split(address if "@" in address else "@" + address)
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            return f"{name} not reachable at {host}:{port} ({exc})"
    try:
        import airflow.providers.celery  # noqa: F401
        import celery  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError as exc:
        return f"the [celery] extra is not installed ({exc})"
    return None


class _Postgres:
    """A fresh database per run; dropped (connections forced out) at stop."""

    def __init__(self, name: str) -> None:
        self.user, self.host, self.port = _split(POSTGRES)
        self.name = name

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{self.name}"


class _RedisDb:
    """Claims an empty Redis DB index (SET NX of a claim key) so parallel runs never share a broker."""

    def __init__(self, run_id: str) -> None:
        self.host, _, port = REDIS.partition(":")
        self.port = int(port)
        self.run_id = run_id
        self.index: int | None = None

    def claim(self) -> int:
        import redis

        for index in range(1, 16):
            client = redis.Redis(host=self.host, port=self.port, db=index)
            if client.set(CLAIM_KEY, self.run_id, nx=True, ex=6 * 3600):
                if client.dbsize() == 1:
                    self.index = index
                    return index
                client.delete(CLAIM_KEY)  # someone uses it without a claim
        raise RuntimeError(f"no free Redis DB index on {REDIS} (all 1..15 claimed or in use)")

    def release(self) -> None:
        import redis

        if self.index is not None:
            client = redis.Redis(host=self.host, port=self.port, db=self.index)
            if client.get(CLAIM_KEY) == self.run_id.encode():
                client.flushdb()
            self.index = None

    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.index}"


@dataclass
class Component:
    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class AirflowDeployment:
    """Start with ``start()`` or ``with``; ``stop()`` kills every process group and drops the database.

    ``env`` is added to every component (e.g. ``AIRFLOW__OSML__*`` settings, ``AIRFLOW_CONN_AWS_DEFAULT``).
    ``worker_queues[i]`` is worker ``i``'s comma-separated queue list (default: Airflow's ``default`` queue).
    Worker ``i``'s Celery name is ``w<i>@osml`` and the task instances it runs get hostname ``w<i>``.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        worker_concurrency: int = 2,
        worker_queues: list[str] | None = None,
        env: dict[str, str] | None = None,
        run_dir: Path | str | None = None,
        dags_folder: Path | str = REPO / "dags",
        keep_run_dir: bool = True,
    ) -> None:
        self.run_id = f"osml_it_{uuid.uuid4().hex[:10]}"
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="osml-airflow-it-")).resolve()
        self.home = self.run_dir / "airflow-home"
        self.logs = self.run_dir / "logs"
        self.dags_folder = Path(dags_folder)
        self.worker_concurrency = worker_concurrency
        self.worker_queues = list(worker_queues or ["default"] * workers)
        if len(self.worker_queues) != workers:
            raise ValueError("worker_queues must have one entry per worker")
        self.extra_env = dict(env or {})
        self.keep_run_dir = keep_run_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self._fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()  # what Fernet.generate_key() does
        self._jwt_secret = secrets.token_hex(32)
        self.db = _Postgres(self.run_id)
        self.redis = _RedisDb(self.run_id)
        self.components: dict[str, Component] = {}
        self.workers: list[Component] = []
        self._http = requests.Session()
        self._http.trust_env = False  # never through a proxy: everything is on 127.0.0.1
        self._token: str | None = None
        self._db_created = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> AirflowDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """The environment every component gets: the caller's minus any AIRFLOW settings, plus this deployment's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        env.update(FAST_DEFAULTS)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                "NO_PROXY": "127.0.0.1,localhost",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PARALLELISM": str(max(2, len(self.worker_queues)) * self.worker_concurrency),
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db.url(),
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url(),
                "AIRFLOW__CELERY__RESULT_BACKEND": self.db.url("db+postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                # The scheduler signs task tokens and the api-server checks them: one secret for all.
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__API__SECRET_KEY": self._jwt_secret[:32],
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180) -> AirflowDeployment:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        try:
            self.redis.claim()
            self.db.create()
            self._db_created = True
            env = self.environment()
            self._run(["db", "migrate"], env, self.logs / "db-migrate.log", timeout=timeout)
            airflow = [sys.executable, "-m", "airflow"]
            self._spawn(Component("api-server", [*airflow, "api-server", "--host", "127.0.0.1",
                                                 "--port", str(self.port), "--workers", "1"],
                                  self.logs / "api-server.log"))
            self._spawn(Component("scheduler", [*airflow, "scheduler", "--skip-serve-logs"],
                                  self.logs / "scheduler.log"))
            self._spawn(Component("dag-processor", [*airflow, "dag-processor"], self.logs / "dag-processor.log"))
            for queues in self.worker_queues:
                self.start_worker(queues, wait=False)
            deadline = time.monotonic() + timeout
            self._wait_for(self._api_healthy, deadline, "api-server health")
            for worker in self.workers:
                self._wait_for(lambda w=worker: " ready." in w.log_text(), deadline, f"{worker.name} ready")
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, queues: str = "default", *, wait: bool = True, timeout: float = 120) -> int:
        """Start one more Celery worker on ``queues``; returns its index."""
        index = len(self.workers)
        name = f"w{index}"
        component = Component(
            f"worker-{index}",
            [sys.executable, "-m", "airflow", "celery", "worker", "--skip-serve-logs",
             "-c", str(self.worker_concurrency), "-q", queues, "-H", f"{name}@osml",
             "--pid", str(self.run_dir / f"worker-{index}.pid")],
            self.logs / f"worker-{index}.log",
            env={"OSML_HARNESS_WORKER": name,
                 "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.harness.worker_hostname"},
        )
        self.workers.append(component)
        self._spawn(component)
        if wait:
            self._wait_for(lambda: " ready." in component.log_text(), time.monotonic() + timeout,
                           f"{component.name} ready")
        return index

    def kill_worker(self, index: int) -> None:
        """``kill -9`` worker ``index`` with all its children (the Celery pool and the running tasks): a lost node."""
        worker = self.workers[index]
        if worker.alive:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=10)

    def worker_connections(self, index: int, port: int) -> int:
        """Open TCP connections from worker ``index`` (and its task processes) to ``127.0.0.1:port``."""
        import psutil

        worker = self.workers[index]
        if not worker.alive:
            return 0
        count = 0
        root = psutil.Process(worker.process.pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                count += sum(1 for c in proc.net_connections(kind="tcp")
                             if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return count

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            if component.alive:
                try:
                    os.killpg(component.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for component in self.components.values():
            if component.process is None:
                continue
            try:
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the group may hold children even after its leader exited
                os.killpg(component.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            component.process.wait()
        self._http.close()
        if self._db_created:
            self.db.drop()
            self._db_created = False
        self.redis.release()
        if not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- REST API ----------------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            reply = self._http.post(f"{self.base_url}/auth/token",
                                    json={"username": "admin", "password": self.password}, timeout=30)
            reply.raise_for_status()
            self._token = reply.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> dict:
        reply = self._http.request(method, f"{self.base_url}/api/v2/{path.lstrip('/')}",
                                   headers={"Authorization": f"Bearer {self.token()}"}, timeout=30, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {reply.status_code}: {reply.text[:500]}")
        return reply.json() if reply.content else {}

    def set_pool(self, name: str, slots: int, description: str = "") -> dict:
        """Create or resize an Airflow pool through the REST API."""
        body = {"name": name, "slots": slots, "description": description or None, "include_deferred": False}
        try:
            return self.api("POST", "pools", json=body)
        except RuntimeError as exc:
            if " 409:" not in str(exc):
                raise
            return self.api("PATCH", f"pools/{name}", json=body)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Until the dag-processor has parsed ``dag_id`` (fails early on an import error)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", f"dags/{dag_id}")
                return
            except RuntimeError:
                errors = self.api("GET", "importErrors").get("import_errors", [])
                if errors:
                    raise RuntimeError(f"DAG import errors: {errors}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} not parsed after {timeout} s; see {self.logs}/dag-processor.log")
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict, *, timeout: float = 120) -> str:
        """Trigger a run through the REST API (as a user would); returns its run id."""
        self.wait_for_dag(dag_id, timeout)
        run = self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Poll until the run is final; returns ``success`` or ``failed`` (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINAL_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {state} after {timeout} s; logs in {self.logs}")
            time.sleep(1)
        return state

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict]:
        """Every task instance of the run (mapped ones one by one), optionally of one task."""
        params = {"limit": 1000}
        if task_id:
            params["task_id"] = task_id
        items = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params=params)
        return [ti for ti in items["task_instances"] if task_id is None or ti["task_id"] == task_id]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict]:
        """Every try of one task instance (hostname, state, try_number)."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        return self.api("GET", path)["task_instances"]

    # -- internals ---------------------------------------------------------------------------------------

    def _api_healthy(self) -> bool:
        try:
            return self._http.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def _wait_for(self, condition, deadline: float, what: str) -> None:
        while not condition():
            dead = [c.name for c in self.components.values() if c.process is not None and not c.alive]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}; logs in {self.logs}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; logs in {self.logs}")
            time.sleep(0.5)

    def _run(self, args: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
        with log.open("wb") as out:
            done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, cwd=self.run_dir)
        if done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}); see {log}")

    def _spawn(self, component: Component) -> None:
        env = {**self.environment(), **component.env}
        with component.log.open("ab") as out:
            # own process group: stop()/kill_worker() reach the component's children too
            component.process = subprocess.Popen(component.args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                 cwd=self.run_dir, start_new_session=True)
        self.components[component.name] = component


def worker_hostname() -> str:
    """``[core] hostname_callable`` of harness workers: task instances record which worker ran them."""
    return os.environ.get("OSML_HARNESS_WORKER") or socket.getfqdn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a deployment and keep it running until Ctrl-C")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--concurrency", type=int, default=2)
    up.add_argument("--queues", action="append", help="queues of one worker (repeat per worker)")
    up.add_argument("--run-dir", type=Path)
    up.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    deployment = AirflowDeployment(workers=args.workers, worker_concurrency=args.concurrency,
                                   worker_queues=args.queues, env=env, run_dir=args.run_dir)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    with deployment:
        print(f"Airflow UI/API: {deployment.base_url}  user admin  password {deployment.password}")
        print(f"run dir: {deployment.run_dir}  (logs in {deployment.logs})")
        print(f"metadata DB: {deployment.db.url()}  broker: {deployment.redis.url()}")
        print("Ctrl-C stops everything and drops the database.", flush=True)
        try:
            while not stop:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
