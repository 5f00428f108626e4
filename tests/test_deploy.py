"""
The deployment artefacts (Dockerfile, docker-compose.yml, deploy/) agree
with the gateway they deploy: configs validate with codexgw's own parser,
probes hit real routes, ports line up from the listen endpoint to the
Service, shutdown timeouts cover the drain, and alerts and dashboards only
query metrics the gateway exports. Plus the standalone demo upstream that
docker-compose.yml runs, served on a real loopback port.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from twisted.application.service import IService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ConnectError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase, TestCase

from codexgw import tap
from codexgw.config import DEMO_MODEL, Config, ConfigError, defaults, isLoopback, load, parse
from codexgw.demo import server as demo_server
from codexgw.demo import tap as demo_tap
from codexgw.demo.model import DemoService, demoResource, reply_for
from codexgw.http.routes import GatewayApp
from codexgw.obs.metrics import GatewayMetrics
from codexgw.service import Gateway
from codexgw.upstream.failover import CircuitBreaker
from tests.integration.test_integration import httpClient, until
from tests.integration.test_integration import serve as serveOnLoopback
from tests.test_service import freePort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def path(*parts: str) -> str:
    return os.path.join(ROOT, *parts)


def text(*parts: str) -> str:
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def yamlDocs(*parts: str) -> list[Any]:
    return [d for d in yaml.safe_load_all(text(*parts)) if d is not None]


def yamlDoc(*parts: str) -> Any:
    [doc] = yamlDocs(*parts)
    return doc


# --- Dockerfile ---------------------------------------------------------------


class Dockerfile:
    """The instructions of a Dockerfile, continuation lines joined, by stage."""

    def __init__(self, source: str) -> None:
        self.stages: list[list[tuple[str, str]]] = []
        logical = ""
        for line in source.splitlines():
            stripped = line.strip()
            if not logical and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                logical += stripped[:-1] + " "
                continue
            logical += stripped
            instruction, _, args = logical.partition(" ")
            instruction = instruction.upper()
            if instruction == "FROM":
                self.stages.append([])
            self.stages[-1].append((instruction, args.strip()))
            logical = ""

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def all(self, instruction: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
        return [a for i, a in (self.final if stage is None else stage) if i == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        if not found:
            raise AssertionError(f"the final stage has no {instruction}")
        return found[-1]

    def env(self) -> dict[str, str]:
        """The final stage's ENV, as a process in the image sees it."""
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                out[key] = value
        return out

    def execForm(self, instruction: str) -> list[str]:
        args = self.last(instruction)
        value = json.loads(args)
        assert isinstance(value, list), f"{instruction} is not in exec (JSON) form: {args}"
        return [str(v) for v in value]


def dockerfile() -> Dockerfile:
    return Dockerfile(text("Dockerfile"))


def listenPort(endpoint: str) -> int:
    """The port of a C{tcp:PORT:...} endpoint string."""
    m = re.match(r"^tcp6?:(?:port=)?(\d+)(?::|$)", endpoint)
    if m is None:
        raise AssertionError(f"not a TCP endpoint with a port: {endpoint!r}")
    return int(m.group(1))


def twistdArgv(argv: list[str]) -> ServerOptions:
    """Parse a command line the way twistd does, plugin options included."""
    if os.path.basename(argv[0]) != "twistd":
        raise AssertionError(f"not a twistd command line: {argv}")
    options = ServerOptions()
    options.parseOptions(argv[1:])
    return options


def drainInEffect(plugin: tap.Options, config: Config | None) -> float:
    """The drain the gateway will use: --drain-timeout, else the config's."""
    if plugin["drain-timeout"] is not None:
        return float(plugin["drain-timeout"])
    if config is not None:
        return config.drain_timeout
    return float(defaults()["server.drain_timeout"])


class DockerfileTests(SynchronousTestCase):
    def test_builder_and_slim_runtime_stages(self) -> None:
        d = dockerfile()
        self.assertGreaterEqual(len(d.stages), 2)
        self.assertTrue(d.final[0][1].startswith("python:3.11-slim"), d.final[0])
        copies = d.all("COPY")
        self.assertTrue(
            any(c.startswith("--from=") and "/opt/venv" in c for c in copies),
            "the runtime copies the builder's venv",
        )
        self.assertIn("/opt/venv/bin", d.env()["PATH"].split(":"))

    def test_builder_installs_the_package_that_setup_cfg_defines(self) -> None:
        d = dockerfile()
        builder = d.stages[0]
        runs = " ".join(d.all("RUN", builder))
        self.assertRegex(runs, r"pip install \.(\s|$)")
        copied = " ".join(d.all("COPY", builder))
        # setup.cfg: packages codexgw, codexgw.translate, twisted.plugins, and
        # long_description from README.md.
        for needed in ("setup.cfg", "pyproject.toml", "README.md", "codexgw", "twisted"):
            self.assertIn(needed, copied.split(), needed)

    def test_runs_as_a_non_root_user(self) -> None:
        user = dockerfile().last("USER").split(":")[0]
        self.assertNotIn(user, ("root", "0", ""))

    def test_runs_twistd_in_the_foreground_with_json_logs(self) -> None:
        d = dockerfile()
        argv = d.execForm("ENTRYPOINT") + d.execForm("CMD")
        options = twistdArgv(argv)
        self.assertEqual(options.subCommand, "codexgw")
        self.assertTrue(options["nodaemon"])
        self.assertEqual(options["pidfile"], "", "no pid file on a read-only root")
        from codexgw.obs.logs import jsonObserver

        self.assertIs(options["logger"], jsonObserver)

    def test_listens_beyond_loopback_on_the_exposed_port(self) -> None:
        d = dockerfile()
        listen = d.env()["CODEXGW_LISTEN"]
        self.assertFalse(isLoopback(listen), "a container must listen beyond loopback")
        self.assertEqual([listenPort(listen)], [int(p.split("/")[0]) for p in d.all("EXPOSE")])

    def test_without_auth_the_image_refuses_to_start(self) -> None:
        # CODEXGW_LISTEN (not --listen) carries the address, so config
        # validation sees it: no keys, no gateway open to the network.
        env = dockerfile().env()
        self.assertRaises(ConfigError, parse, {}, "<defaults>", env)

    def test_healthcheck_asks_liveness_on_the_exposed_port(self) -> None:
        d = dockerfile()
        check = d.last("HEALTHCHECK")
        self.assertNotIn("curl", check)
        m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/]+)", check)
        assert m is not None, check
        self.assertEqual(m.group(2), "/health/live")
        self.assertEqual(int(m.group(1)), int(d.last("EXPOSE").split("/")[0]))

    def test_working_directory_is_writable_for_the_sqlite_store(self) -> None:
        d = dockerfile()
        workdir = d.last("WORKDIR")
        store = os.path.normpath(os.path.join(workdir, defaults()["store.path"]))
        self.assertTrue(store.startswith(workdir + "/"))
        runs = " ".join(d.all("RUN"))
        self.assertRegex(runs, rf"chown -R \S+ {re.escape(workdir)}(\s|$)")

    def test_config_comes_from_a_mounted_file(self) -> None:
        self.assertTrue(os.path.isabs(dockerfile().env()["CODEXGW_CONFIG"]))

    def test_dockerignore_keeps_what_the_build_copies(self) -> None:
        rules = [
            line.strip()
            for line in text(".dockerignore").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        self.assertEqual(rules[0], "*", "an allowlist: nothing but the sources")
        included = {r[1:] for r in rules if r.startswith("!")}
        d = dockerfile()
        for stage in d.stages:
            for args in d.all("COPY", stage):
                if args.startswith("--from="):
                    continue
                for source in args.split()[:-1]:
                    self.assertIn(source, included, f"COPY {source} is excluded")


# --- Kubernetes ---------------------------------------------------------------


class K8s:
    """The manifests of deploy/k8s, with the gateway's effective view of them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Any] = {}
        self.files: dict[str, list[Any]] = {}
        directory = path("deploy", "k8s")
        for name in sorted(os.listdir(directory)):
            if name.endswith(".yaml"):
                docs = yamlDocs("deploy", "k8s", name)
                self.files[name] = docs
                for doc in docs:
                    self.objects[(doc["kind"], doc["metadata"]["name"])] = doc
        [self.deployment] = yamlDocs("deploy", "k8s", "deployment.yaml")
        [self.service] = yamlDocs("deploy", "k8s", "service.yaml")
        [self.configmap] = yamlDocs("deploy", "k8s", "configmap.yaml")
        [self.secret] = yamlDocs("deploy", "k8s", "secret.example.yaml")
        self.pod = self.deployment["spec"]["template"]
        [self.container] = self.pod["spec"]["containers"]

    def kind(self, kind: str, name: str) -> Any:
        return self.objects[(kind, name)]

    def containerPort(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        for p in self.container["ports"]:
            if p["name"] == port:
                return int(p["containerPort"])
        raise AssertionError(f"no container port named {port!r}")

    def environ(self) -> dict[str, str]:
        """What the gateway's process sees: the image's ENV, the secret's
        keys (envFrom) and the container's env, in Kubernetes' order."""
        env = dockerfile().env()
        secretValues = self.secret.get("stringData") or {}
        for source in self.container.get("envFrom", []):
            ref = source["secretRef"]["name"]
            assert ref == self.secret["metadata"]["name"], f"unknown secret {ref}"
            env.update({k: str(v) for k, v in secretValues.items()})
        for var in self.container.get("env", []):
            if "value" in var:
                env[var["name"]] = str(var["value"])
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"] == self.secret["metadata"]["name"]
                env[var["name"]] = str(secretValues[ref["key"]])
        return env

    def rawConfig(self) -> Any:
        return yaml.safe_load(self.configmap["data"]["codexgw.yaml"])

    def config(self) -> Config:
        return parse(self.rawConfig(), "deploy/k8s/configmap.yaml", self.environ())

    def argv(self) -> list[str]:
        d = dockerfile()
        command = self.container.get("command") or d.execForm("ENTRYPOINT")
        args = self.container.get("args")
        return [str(a) for a in command + (d.execForm("CMD") if args is None else args)]

    def preStopSeconds(self) -> float:
        preStop = self.container["lifecycle"]["preStop"]
        if "sleep" in preStop:
            return float(preStop["sleep"]["seconds"])
        command = preStop["exec"]["command"]
        self.assertSleep(command)
        return float(command[-1])

    @staticmethod
    def assertSleep(command: list[str]) -> None:
        if os.path.basename(command[0]) != "sleep" or len(command) != 2:
            raise AssertionError(f"preStop is not a plain sleep: {command}")


class KubernetesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.k8s = K8s()

    def test_every_manifest_parses_with_the_expected_kinds_and_versions(self) -> None:
        expected = {
            "deployment.yaml": [("apps/v1", "Deployment")],
            "service.yaml": [("v1", "Service")],
            "configmap.yaml": [("v1", "ConfigMap")],
            "secret.example.yaml": [("v1", "Secret")],
            "hpa.yaml": [("autoscaling/v2", "HorizontalPodAutoscaler")],
            "pdb.yaml": [("policy/v1", "PodDisruptionBudget")],
            "redis.yaml": [("apps/v1", "Deployment"), ("v1", "Service")],
        }
        found = {
            name: [(d["apiVersion"], d["kind"]) for d in docs]
            for name, docs in self.k8s.files.items()
        }
        self.assertEqual(found, expected)

    def test_configmap_config_validates_with_the_pods_environment(self) -> None:
        # parse() refuses any ${VAR} the pod does not provide.
        config = self.k8s.config()
        self.assertTrue(config.auth_enabled)
        self.assertTrue(config.keys)
        self.assertFalse(isLoopback(config.listen))

    def test_configmap_config_needs_its_secrets(self) -> None:
        environ = self.k8s.environ()
        for key in self.k8s.secret["stringData"]:
            without = {k: v for k, v in environ.items() if k != key}
            self.assertRaises(ConfigError, parse, self.k8s.rawConfig(), "configmap", without)

    def test_config_file_is_mounted_where_codexgw_config_points(self) -> None:
        configPath = self.k8s.environ()["CODEXGW_CONFIG"]
        mounts = {m["name"]: m for m in self.k8s.container["volumeMounts"]}
        volumes = {v["name"]: v for v in self.k8s.pod["spec"]["volumes"]}
        found = False
        for name, mount in mounts.items():
            source = volumes[name].get("configMap")
            if source is None:
                continue
            self.assertEqual(source["name"], self.k8s.configmap["metadata"]["name"])
            for item in source.get(
                "items", [{"key": k, "path": k} for k in self.k8s.configmap["data"]]
            ):
                if os.path.join(mount["mountPath"], item["path"]) == configPath:
                    self.assertIn(item["key"], self.k8s.configmap["data"])
                    found = True
        self.assertTrue(found, f"nothing mounted at {configPath}")

    def test_ports_line_up_from_listen_to_service(self) -> None:
        port = listenPort(self.k8s.config().listen)
        [containerPort] = self.k8s.container["ports"]
        self.assertEqual(containerPort["containerPort"], port)
        [servicePort] = self.k8s.service["spec"]["ports"]
        self.assertEqual(self.k8s.containerPort(servicePort["targetPort"]), port)
        self.assertEqual(int(dockerfile().last("EXPOSE").split("/")[0]), port)
        annotations = self.k8s.pod["metadata"]["annotations"]
        self.assertEqual(int(annotations["prometheus.io/port"]), port)
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")

    def test_probes_hit_the_gateways_health_routes(self) -> None:
        routes = {rule.rule for rule in GatewayApp.app.url_map.iter_rules()}
        port = listenPort(self.k8s.config().listen)
        probes = {
            kind: self.k8s.container[kind]["httpGet"]
            for kind in ("livenessProbe", "readinessProbe", "startupProbe")
            if kind in self.k8s.container
        }
        for get in probes.values():
            self.assertIn(get["path"], routes)
            self.assertEqual(self.k8s.containerPort(get["port"]), port)
        self.assertEqual(probes["livenessProbe"]["path"], "/health/live")
        self.assertEqual(probes["readinessProbe"]["path"], "/health/ready")

    def test_grace_period_covers_prestop_and_the_drain(self) -> None:
        options = twistdArgv(self.k8s.argv())
        self.assertEqual(options.subCommand, "codexgw")
        self.assertTrue(options["nodaemon"])
        drain = drainInEffect(options.subOptions, self.k8s.config())
        preStop = self.k8s.preStopSeconds()
        self.assertGreater(preStop, 0)
        grace = self.k8s.pod["spec"]["terminationGracePeriodSeconds"]
        self.assertGreater(grace, preStop + drain)

    def test_drain_in_effect_follows_the_argument_then_the_config(self) -> None:
        plugin = tap.Options()
        plugin.parseOptions(["--drain-timeout", "12"])
        config = parse({"server": {"drain_timeout": 7}}, "x", {})
        self.assertEqual(drainInEffect(plugin, config), 12)
        self.assertEqual(drainInEffect(tap.Options(), config), 7)
        self.assertEqual(drainInEffect(tap.Options(), None), defaults()["server.drain_timeout"])

    def test_replicas_share_limits_and_responses_through_the_redis_service(self) -> None:
        config = self.k8s.config()
        self.assertEqual(config.rate_limits.backend, "redis")
        self.assertEqual(config.store.backend, "redis")
        assert config.redis is not None
        m = re.match(r"redis://(?:[^@/]*@)?([^:/]+):(\d+)", config.redis.url)
        assert m is not None, "redis url"
        redis = self.k8s.kind("Service", m.group(1))
        [port] = redis["spec"]["ports"]
        self.assertEqual(port["port"], int(m.group(2)))
        deployment = self.k8s.kind("Deployment", m.group(1))
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(redis["spec"]["selector"].items(), labels.items())
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        self.assertIn(port["targetPort"], [p.get("name") for p in container["ports"]] + [6379])

    def test_redis_requires_the_password_the_gateway_sends(self) -> None:
        [redis] = [d for d in self.k8s.files["redis.yaml"] if d["kind"] == "Deployment"]
        [container] = redis["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        password = args[args.index("--requirepass") + 1]
        var = re.fullmatch(r"\$\((\w+)\)", password)
        assert var is not None, password
        [env] = [e for e in container["env"] if e["name"] == var.group(1)]
        key = env["valueFrom"]["secretKeyRef"]["key"]
        config = self.k8s.config()
        assert config.redis is not None
        self.assertIn(f":{self.k8s.secret['stringData'][key]}@", config.redis.url, "same password")

    def test_three_replicas_spread_and_scaled_with_a_budget(self) -> None:
        spec = self.k8s.deployment["spec"]
        self.assertEqual(spec["replicas"], 3)
        labels = self.k8s.pod["metadata"]["labels"]
        self.assertLessEqual(spec["selector"]["matchLabels"].items(), labels.items())
        self.assertLessEqual(self.k8s.service["spec"]["selector"].items(), labels.items())
        [pdb] = self.k8s.files["pdb.yaml"]
        self.assertLessEqual(pdb["spec"]["selector"]["matchLabels"].items(), labels.items())
        self.assertLess(pdb["spec"].get("maxUnavailable", 0), spec["replicas"])
        [hpa] = self.k8s.files["hpa.yaml"]
        target = hpa["spec"]["scaleTargetRef"]
        self.assertEqual(
            (target["kind"], target["name"]),
            ("Deployment", self.k8s.deployment["metadata"]["name"]),
        )
        self.assertLessEqual(hpa["spec"]["minReplicas"], spec["replicas"])
        self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
        # CPU utilisation is relative to requests: they must be set.
        self.assertIn("cpu", self.k8s.container["resources"]["requests"])

    def test_resources_fit_an_idle_gateway(self) -> None:
        def mebibytes(quantity: str) -> float:
            m = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
            assert m is not None, quantity
            return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)

        resources = self.k8s.container["resources"]
        requested = mebibytes(resources["requests"]["memory"])
        limit = mebibytes(resources["limits"]["memory"])
        self.assertGreaterEqual(requested, 64, "~60 MB resident when idle")
        self.assertGreater(limit, requested)

    def test_pods_run_unprivileged_on_a_read_only_root(self) -> None:
        for docs in self.k8s.files.values():
            for doc in docs:
                if doc["kind"] != "Deployment":
                    continue
                pod = doc["spec"]["template"]["spec"]
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertNotEqual(pod["securityContext"].get("runAsUser"), 0)
                for container in pod["containers"]:
                    security = container["securityContext"]
                    self.assertTrue(security["readOnlyRootFilesystem"])
                    self.assertFalse(security["allowPrivilegeEscalation"])
                    self.assertEqual(security["capabilities"]["drop"], ["ALL"])

    def test_nothing_the_gateway_writes_lands_on_the_read_only_root(self) -> None:
        config = self.k8s.config()
        if config.store.backend != "sqlite":
            return
        workdir = dockerfile().last("WORKDIR")
        store = os.path.join(workdir, config.store.path)
        writable = [
            m["mountPath"] for m in self.k8s.container["volumeMounts"] if not m.get("readOnly")
        ]
        self.assertTrue(any(store.startswith(w.rstrip("/") + "/") for w in writable))


# --- docker compose -----------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def composeValue(value: str, shell: Mapping[str, str]) -> str:
    """Compose's own interpolation of C{${VAR}}, C{${VAR:-x}}, C{${VAR:?msg}}."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if shell.get(name):
            return shell[name]
        if op == "-":
            return arg
        if op == "?":
            raise AssertionError(f"compose refuses to start without {name}: {arg}")
        return ""

    return _COMPOSE_VAR.sub(sub, value)


class ComposeTests(SynchronousTestCase):
    shell = {"CODEXGW_API_KEY": "x"}

    def setUp(self) -> None:
        self.compose = yamlDoc("docker-compose.yml")
        self.services = self.compose["services"]
        self.gateway = self.services["codexgw"]

    def environ(self) -> dict[str, str]:
        env = dockerfile().env()
        for key, value in self.gateway["environment"].items():
            env[key] = composeValue(str(value), self.shell)
        return env

    def mountedConfig(self) -> str:
        target = self.environ()["CODEXGW_CONFIG"]
        for volume in self.gateway["volumes"]:
            source, _, rest = volume.partition(":")
            if rest.split(":")[0] == target:
                return os.path.normpath(source)
        raise AssertionError(f"nothing mounted at {target}")

    def config(self) -> Config:
        return load(path(self.mountedConfig()), self.environ())

    def test_has_the_gateway_a_fake_upstream_redis_and_prometheus(self) -> None:
        self.assertLessEqual(
            {"codexgw", "fake-upstream", "redis", "prometheus"}, set(self.services)
        )
        self.assertIn("build", self.gateway)

    def test_config_is_the_compose_one_and_validates(self) -> None:
        self.assertEqual(self.mountedConfig(), os.path.join("deploy", "compose", "codexgw.yaml"))
        load(path("deploy", "compose", "codexgw.yaml"), {"CODEXGW_API_KEY": "x"})
        config = self.config()
        self.assertTrue(config.auth_enabled)
        self.assertEqual(config.rate_limits.backend, "redis")
        self.assertEqual(config.store.backend, "redis")

    def test_compose_will_not_start_without_a_client_key(self) -> None:
        self.shell = {}
        self.assertRaises(AssertionError, self.environ)

    def test_a_real_provider_replaces_the_fake_upstream_by_environment(self) -> None:
        self.shell = {"CODEXGW_API_KEY": "x", "CODEXGW_UPSTREAM_URL": "https://api.example/v1"}
        config = self.config()
        self.assertEqual(config.default.base_url, "https://api.example/v1")

    def test_gateway_reaches_the_fake_upstream_where_it_listens(self) -> None:
        config = self.config()
        m = re.match(r"http://([^:/]+):(\d+)/v1$", config.default.base_url)
        assert m is not None, config.default.base_url
        fake = self.services[m.group(1)]
        argv = fake["entrypoint"] + fake["command"]
        self.assertEqual(argv[:3], ["python", "-m", "codexgw.demo.server"])
        options = demo_server.Options()
        options.parseOptions(argv[3:])
        self.assertEqual(listenPort(options["listen"]), int(m.group(2)))
        self.assertFalse(isLoopback(options["listen"]), "other containers must reach it")
        health = " ".join(fake["healthcheck"]["test"])
        self.assertIn(f":{m.group(2)}/v1/models", health)

    def test_gateway_uses_the_redis_service(self) -> None:
        config = self.config()
        assert config.redis is not None
        host = re.match(r"redis://(?:[^@/]*@)?([^:/]+)", config.redis.url)
        assert host is not None
        self.assertIn(host.group(1), self.services)
        self.assertTrue(self.services[host.group(1)]["image"].startswith("redis:"))

    def test_published_port_is_the_listen_port(self) -> None:
        port = listenPort(self.config().listen)
        published = [p.rsplit(":", 1)[-1] for p in self.gateway["ports"]]
        self.assertEqual(published, [str(port)])

    def test_stop_grace_period_covers_the_drain(self) -> None:
        m = re.fullmatch(r"(\d+)s", self.gateway["stop_grace_period"])
        assert m is not None
        self.assertGreater(int(m.group(1)), self.config().drain_timeout)

    def test_prometheus_scrapes_the_gateway_with_the_alerts(self) -> None:
        prometheus = self.services["prometheus"]
        mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("./"))
        self.assertEqual(
            mounts["./deploy/prometheus/prometheus.yml"], "/etc/prometheus/prometheus.yml"
        )
        config = yamlDoc("deploy", "prometheus", "prometheus.yml")
        for rules in config["rule_files"]:
            target = os.path.join("/etc/prometheus", rules)
            self.assertIn(target, mounts.values())
            source = [s for s, t in mounts.items() if t == target][0]
            self.assertTrue(os.path.exists(path(source)), source)
        [job] = config["scrape_configs"]
        [static] = job["static_configs"]
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        self.assertIn("/metrics", {r.rule for r in GatewayApp.app.url_map.iter_rules()})
        self.assertEqual(static["targets"], [f"codexgw:{listenPort(self.config().listen)}"])


# --- systemd ------------------------------------------------------------------


def unitFile(source: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in source.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


class SystemdTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.unit = unitFile(text("deploy", "systemd", "codexgw.service"))

    def one(self, key: str) -> str:
        [value] = self.unit[key]
        return value

    def test_runs_twistd_in_the_foreground_from_the_venv(self) -> None:
        argv = shlex.split(self.one("ExecStart"))
        self.assertTrue(argv[0].startswith("/opt/codexgw/"))
        options = twistdArgv(argv)
        self.assertEqual(options.subCommand, "codexgw")
        self.assertTrue(options["nodaemon"])
        self.assertEqual(options.subOptions["config"], "/etc/codexgw/codexgw.yaml")

    def test_stop_timeout_covers_the_drain(self) -> None:
        options = twistdArgv(shlex.split(self.one("ExecStart")))
        # The config file is the operator's: assume its drain is the default.
        drain = drainInEffect(options.subOptions, None)
        self.assertEqual(self.one("KillSignal"), "SIGTERM")
        self.assertGreater(float(self.one("TimeoutStopSec")), drain)

    def test_unprivileged_restarted_and_hardened(self) -> None:
        self.assertNotIn(self.one("User"), ("root", "0"))
        self.assertEqual(self.one("Restart"), "on-failure")
        self.assertEqual(self.one("NoNewPrivileges"), "yes")
        self.assertEqual(self.one("ProtectSystem"), "strict")
        self.assertTrue(self.unit["EnvironmentFile"])
        # An invalid config exits EX_CONFIG (codexgw.tap): do not loop on it.
        self.assertIn(str(os.EX_CONFIG), self.one("RestartPreventExitStatus").split())

    def test_sqlite_store_lands_in_the_state_directory(self) -> None:
        state = os.path.join("/var/lib", self.one("StateDirectory"))
        self.assertEqual(self.one("WorkingDirectory"), state)
        store = os.path.normpath(os.path.join(state, defaults()["store.path"]))
        self.assertTrue(store.startswith(state + "/"))


# --- metrics in alerts and dashboards ----------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta",
    "histogram_quantile", "vector", "abs", "clamp_min", "clamp_max",
    "max_over_time", "min_over_time", "avg_over_time", "topk", "bottomk", "absent",
}  # fmt: skip
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
_TARGET_LABELS = {"job", "instance"}


def exportedMetrics() -> dict[str, set[str]]:
    """
    Every series name a real gateway exposes, with its label names: each
    metric is given one child so that its samples (C{_bucket}, C{_sum},
    C{_count}, C{_total}) appear in the rendered text.
    """
    metrics = GatewayMetrics()
    for value in vars(metrics).values():
        labelnames = getattr(value, "_labelnames", None)
        if labelnames:
            value.labels(*["x"] * len(labelnames))
    out: dict[str, set[str]] = {}
    for line in metrics.render().decode().splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? ", line)
        assert m is not None, line
        out.setdefault(m.group(1), set()).update(re.findall(r'(\w+)="', m.group(2) or ""))
    return out


class Expr:
    """What a PromQL expression references, found with regular expressions."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        blanked = _STRING.sub('""', expr)
        self.matchers: list[tuple[str, set[str]]] = [
            (name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body)))
            for name, body in _SELECTOR.findall(blanked)
        ]
        self.grouping: set[str] = set()
        for _, labels in _GROUPING.findall(blanked):
            self.grouping.update(label.strip() for label in labels.split(",") if label.strip())
        bare = _GROUPING.sub(" ", blanked)
        bare = re.sub(r"\{[^}]*\}", " ", bare)
        bare = re.sub(r"\[[^\]]*\]", " ", bare)
        bare = re.sub(r"\$\w+", " ", bare)
        self.functions: set[str] = set()
        self.names: set[str] = set()
        for name, call in _IDENT.findall(bare):
            if name not in _KEYWORDS:
                (self.functions if call else self.names).add(name)

    @property
    def metrics(self) -> set[str]:
        return self.names


class MetricReferenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.exported = exportedMetrics()

    def assertExprUsesRealMetrics(self, where: str, expr: Expr, legend: set[str]) -> None:
        self.assertTrue(expr.metrics, f"{where}: no metric in {expr.expr!r}")
        unknownFunctions = expr.functions - _FUNCTIONS
        self.assertFalse(unknownFunctions, f"{where}: not PromQL functions {unknownFunctions}")
        available: set[str] = set(_TARGET_LABELS)
        for name in expr.metrics:
            self.assertIn(name, self.exported, f"{where}: codexgw exports no {name}")
            available |= self.exported[name]
        for name, labels in expr.matchers:
            self.assertLessEqual(labels, self.exported[name] | _TARGET_LABELS, f"{where}: {name}")
        self.assertLessEqual(expr.grouping, available, f"{where}: grouping labels")
        self.assertLessEqual(legend, expr.grouping or available, f"{where}: labels shown")

    def test_expression_parsing_sees_metrics_labels_and_functions(self) -> None:
        e = Expr(
            "histogram_quantile(0.95, sum by (le, route) "
            '(rate(codexgw_time_to_first_byte_seconds_bucket{route=~"/v1/{x}.+"}[5m]))) '
            "> 2 and on() codexgw_active_streams"
        )
        self.assertEqual(
            e.metrics, {"codexgw_time_to_first_byte_seconds_bucket", "codexgw_active_streams"}
        )
        self.assertEqual(e.functions, {"histogram_quantile", "sum", "rate"})
        self.assertEqual(e.grouping, {"le", "route"})
        self.assertEqual(e.matchers, [("codexgw_time_to_first_byte_seconds_bucket", {"route"})])

    def test_a_misspelt_metric_is_caught(self) -> None:
        e = Expr("sum(rate(codexgw_request_total[5m]))")
        self.assertRaises(self.failureException, self.assertExprUsesRealMetrics, "t", e, set())

    def test_histograms_are_queried_through_their_series(self) -> None:
        self.assertIn("codexgw_time_to_first_byte_seconds_bucket", self.exported)
        self.assertIn("le", self.exported["codexgw_time_to_first_byte_seconds_bucket"])
        self.assertNotIn("codexgw_time_to_first_byte_seconds", self.exported)
        self.assertIn("codexgw_requests_total", self.exported)

    def rules(self) -> list[dict[str, Any]]:
        doc = yamlDoc("deploy", "prometheus", "alerts.yml")
        return [rule for group in doc["groups"] for rule in group["rules"]]

    def test_alerts_query_only_exported_metrics(self) -> None:
        for rule in self.rules():
            expr = Expr(rule["expr"])
            shown = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))))
            self.assertExprUsesRealMetrics(rule["alert"], expr, shown)

    def test_alerts_are_complete_rules(self) -> None:
        names = [rule["alert"] for rule in self.rules()]
        self.assertEqual(len(names), len(set(names)))
        for rule in self.rules():
            self.assertRegex(rule.get("for", "0s"), r"^\d+[smh]$")
            self.assertIn(rule["labels"]["severity"], ("critical", "warning", "info"))
            self.assertTrue(rule["annotations"]["summary"])

    def test_alerts_cover_what_an_operator_pages_on(self) -> None:
        kinds = {
            "error rate": lambda e: (
                "codexgw_requests_total" in e.metrics and 'status=~"5.."' in e.expr
            ),
            "upstream down": lambda e: (
                "codexgw_upstream_up" in e.metrics and re.search(r"==\s*0\b", e.expr)
            ),
            "time to first byte p95": lambda e: (
                "histogram_quantile" in e.functions
                and "codexgw_time_to_first_byte_seconds_bucket" in e.metrics
            ),
            "rate-limit saturation": lambda e: "codexgw_rate_limited_total" in e.metrics,
            "circuit open": lambda e: "codexgw_circuit_state" in e.metrics,
            "rate-limit backend down": lambda e: "codexgw_ratelimit_backend_up" in e.metrics,
        }
        exprs = [Expr(rule["expr"]) for rule in self.rules()]
        for kind, matches in kinds.items():
            self.assertTrue(any(matches(e) for e in exprs), f"no alert on {kind}")

    def test_circuit_alert_compares_with_the_open_state(self) -> None:
        breaker = CircuitBreaker("u", Clock(), threshold=1)
        breaker.failure()
        [rule] = [r for r in self.rules() if "codexgw_circuit_state" in r["expr"]]
        m = re.search(r"==\s*(\d+)", rule["expr"])
        assert m is not None
        self.assertEqual(int(m.group(1)), breaker.value)

    def dashboard(self) -> Any:
        return json.loads(text("deploy", "grafana", "codexgw-dashboard.json"))

    def panels(self) -> Iterator[dict[str, Any]]:
        for panel in self.dashboard()["panels"]:
            yield panel
            yield from panel.get("panels", [])

    def test_dashboard_is_a_grafana_dashboard(self) -> None:
        dashboard = self.dashboard()
        self.assertTrue(dashboard["title"])
        self.assertIsInstance(dashboard["schemaVersion"], int)
        ids = [p["id"] for p in self.panels()]
        self.assertEqual(len(ids), len(set(ids)))
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in self.panels():
            self.assertEqual(set(panel["gridPos"]), {"h", "w", "x", "y"})
            self.assertLessEqual(panel["gridPos"]["x"] + panel["gridPos"]["w"], 24)
            for target in panel.get("targets", []):
                uid = target["datasource"]["uid"]
                self.assertIn(uid.strip("${}"), variables, panel["title"])

    def test_dashboard_queries_only_exported_metrics(self) -> None:
        for panel in self.panels():
            for target in panel.get("targets", []):
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                self.assertExprUsesRealMetrics(panel["title"], Expr(target["expr"]), legend)
        for variable in self.dashboard()["templating"]["list"]:
            if variable["type"] == "query":
                query = variable["query"]
                query = query["query"] if isinstance(query, dict) else query
                m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
                assert m is not None, f"{variable['name']}: {query}"
                self.assertIn(m.group(1), self.exported)
                self.assertIn(m.group(2), self.exported[m.group(1)] | _TARGET_LABELS)

    def test_dashboard_shows_what_an_operator_looks_at(self) -> None:
        used: set[str] = set()
        for panel in self.panels():
            for target in panel.get("targets", []):
                used |= Expr(target["expr"]).metrics
        for name in (
            "codexgw_requests_total",
            "codexgw_request_duration_seconds_bucket",
            "codexgw_time_to_first_byte_seconds_bucket",
            "codexgw_active_streams",
            "codexgw_upstream_up",
            "codexgw_circuit_state",
            "codexgw_upstream_retries_total",
            "codexgw_failovers_total",
            "codexgw_tokens_total",
            "codexgw_rate_limited_total",
            "codexgw_cancellations_total",
        ):
            self.assertIn(name, used)


# --- the standalone demo upstream ---------------------------------------------


class DemoServerTests(TestCase):
    async def serve(self) -> str:
        server = await demo_server.listen(reactor, "tcp:0:interface=127.0.0.1")
        self.addCleanup(server.stop)
        return f"http://127.0.0.1:{server.port.getHost().port}/v1"

    async def test_serves_the_demo_model_as_a_chat_upstream(self) -> None:
        base = await self.serve()
        http = httpClient(self)
        body = {"model": DEMO_MODEL, "messages": [{"role": "user", "content": "hello there"}]}
        response = await http.post(base + "/chat/completions", json=body)
        self.assertEqual(response.code, 200)
        answer = await response.json()
        self.assertEqual(answer["choices"][0]["message"]["content"], reply_for(body))
        models = await (await http.get(base + "/models")).json()
        self.assertEqual([m["id"] for m in models["data"]], [DEMO_MODEL])

    async def test_a_gateway_in_front_of_it_is_ready_and_bridges(self) -> None:
        # docker-compose.yml's topology on loopback: the gateway reaches the
        # demo over HTTP as an ordinary openai-dialect upstream.
        base = await self.serve()
        config = parse(
            {
                "upstreams": {"fake": {"base_url": base, "provider": "openai"}},
                "store": {"backend": "none"},
            },
            "test.yaml",
            {},
        )
        gateway = Gateway(config)
        self.addCleanup(gateway.close)
        port = serveOnLoopback(self, gateway.resource)
        root = f"http://127.0.0.1:{port.getHost().port}"
        http = httpClient(self)
        ready = await http.get(root + "/health/ready")
        self.assertEqual(ready.code, 200, await ready.text())
        response = await http.post(
            root + "/v1/responses", json={"model": DEMO_MODEL, "input": "through the gateway"}
        )
        self.assertEqual(response.code, 200)
        output = (await response.json())["output"]
        texts = [c["text"] for item in output for c in item.get("content", [])]
        self.assertIn("You said: through the gateway", " ".join(texts))

    def test_listens_on_loopback_unless_told_otherwise(self) -> None:
        options = demo_server.Options()
        options.parseOptions([])
        self.assertTrue(isLoopback(options["listen"]))

    def test_bad_arguments_exit_with_usage(self) -> None:
        stderr, sys.stderr = sys.stderr, io.StringIO()
        try:
            with self.assertRaises(SystemExit) as raised:
                demo_server.main(["--no-such-option"])
        finally:
            sys.stderr = stderr
        self.assertEqual(raised.exception.code, 2)


class DemoPluginTests(TestCase):
    """C{twistd codexgw-demo}: the demo model alone, as twistd runs it."""

    timeout = 30

    def test_twistd_finds_the_codexgw_demo_plugin(self) -> None:
        options = twistdArgv(["twistd", "-n", "codexgw-demo"])
        self.assertEqual(options.subCommand, "codexgw-demo")
        self.assertIsInstance(options.subOptions, demo_tap.Options)
        self.assertEqual(options.subOptions["listen"], "tcp:8081:interface=127.0.0.1")
        self.assertTrue(isLoopback(options.subOptions["listen"]))

    async def test_make_service_serves_the_demo_model_on_its_endpoint(self) -> None:
        options = demo_tap.Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1"])
        service = demo_tap.makeService(options)
        self.assertTrue(IService.providedBy(service))
        assert isinstance(service, DemoService)
        self.assertIsNone(service.port)
        service.startService()
        self.addCleanup(service.stopService)
        assert service.port is not None
        base = f"http://127.0.0.1:{service.port.getHost().port}/v1"
        http = httpClient(self)
        models = await (await http.get(base + "/models")).json()
        self.assertEqual([m["id"] for m in models["data"]], [DEMO_MODEL])
        await service.stopService()
        self.assertIsNone(service.port)

    def test_a_port_that_cannot_be_had_fails_the_start(self) -> None:
        taken = serveOnLoopback(self, demoResource(reactor))
        service = DemoService(reactor, f"tcp:{taken.getHost().port}:interface=127.0.0.1")
        self.assertRaises(CannotListenError, service.startService)
        self.assertFalse(service.running)

    async def test_twistd_runs_it(self) -> None:
        port = freePort()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        ended: Deferred[None] = Deferred()

        class Watch(ProcessProtocol):
            output = b""

            def outReceived(self, data: bytes) -> None:
                self.output += data

            errReceived = outReceived

            def processEnded(self, reason: Failure) -> None:
                ended.callback(None)

        watch = Watch()
        process = reactor.spawnProcess(
            watch,
            twistd,
            [
                twistd,
                "-n",
                "--pidfile=",
                "codexgw-demo",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            env=dict(os.environ),
            path=ROOT,
        )

        def stop() -> Deferred[None]:
            if not ended.called:
                process.signalProcess("KILL")
            return ended

        self.addCleanup(stop)
        http = httpClient(self)
        body = {"model": DEMO_MODEL, "messages": [{"role": "user", "content": "from twistd"}]}
        for _ in range(100):
            try:
                response = await http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=body
                )
                break
            except ConnectError:
                await until(lambda: False, timeout=0.1)
        else:
            self.fail(watch.output.decode()[-2000:])
        self.assertEqual(response.code, 200)
        answer = await response.json()
        self.assertEqual(answer["choices"][0]["message"]["content"], reply_for(body))
        process.signalProcess("TERM")
        await ended
        self.assertIn(b"serving the built-in offline demo model", watch.output)
