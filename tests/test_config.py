"""
Tests for L{codexgw.config}: defaults, the schema, C{${ENV}} interpolation,
environment overrides, and error reports that name the file, the key and what
was expected, all at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from codexgw.config import DEFAULT_LISTEN, Config, ConfigError, Timeouts, load, parse

CONF = FilePath(__file__).parent().parent().child("conf")

MINIMUM = """\
listen: "tcp:8080:interface=127.0.0.1"
upstreams:
  main:
    base_url: "http://127.0.0.1:9000/v1"
    api_key: "${MAIN_API_KEY}"
    wire_api: chat
default_upstream: main
"""

SECRET = "sk-test-0123456789abcdefSECRET"


def main(**fields: Any) -> dict[str, Any]:
    """Raw data with one upstream, C{main}, plus C{fields}."""
    upstream: dict[str, Any] = {"base_url": "http://127.0.0.1:9000/v1"}
    upstream.update(fields)
    return {"upstreams": {"main": upstream}}


class ConfigTestCase(SynchronousTestCase):
    def writeConfig(self, text: str | bytes, name: str = "codexgw.yaml") -> str:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child(name)
        path.setContent(text.encode("utf-8") if isinstance(text, str) else text)
        return path.path

    def problems(self, data: Any, environ: Mapping[str, str] | None = None) -> list[str]:
        """The problems C{parse} reports for C{data} read from C{conf.yaml}."""
        error = self.assertRaises(ConfigError, parse, data, "conf.yaml", environ or {})
        return error.problems

    def assertOneProblem(
        self, data: Any, *fragments: str, environ: Mapping[str, str] | None = None
    ) -> str:
        """
        C{data} has exactly one problem, which names the file and contains
        every one of C{fragments}.
        """
        problems = self.problems(data, environ)
        self.assertEqual(len(problems), 1, problems)
        [problem] = problems
        self.assertTrue(problem.startswith("conf.yaml: "), problem)
        for fragment in fragments:
            self.assertIn(fragment, problem)
        return problem


class DefaultsTests(ConfigTestCase):
    """
    With no file the gateway serves the offline demo model on loopback.
    """

    def assertDemoDefaults(self, config: Config) -> None:
        self.assertEqual(list(config.upstreams), ["demo"])
        self.assertEqual(config.default_upstream, "demo")
        self.assertEqual(config.default.provider, "demo")
        self.assertTrue(config.default.is_demo)
        self.assertEqual(config.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.models, ())

    def test_no_file_serves_the_demo_upstream_on_loopback(self) -> None:
        config = load(None, {})
        self.assertDemoDefaults(config)
        self.assertEqual(config.source, "<defaults>")
        self.assertEqual(config.default.models, ("codexgw-demo",))

    def test_default_listen_is_loopback_port_8080(self) -> None:
        self.assertEqual(DEFAULT_LISTEN, "tcp:8080:interface=127.0.0.1")

    def test_empty_file_is_the_defaults(self) -> None:
        path = self.writeConfig("# nothing here yet\n")
        config = load(path, {})
        self.assertDemoDefaults(config)
        self.assertEqual(config.source, path)

    def test_null_sections_are_the_defaults(self) -> None:
        config = parse({"listen": None, "upstreams": None, "server": None}, "conf.yaml", {})
        self.assertDemoDefaults(config)

    def test_CODEXGW_CONFIG_names_the_file_when_no_path_is_given(self) -> None:
        path = self.writeConfig(MINIMUM)
        config = load(None, {"CODEXGW_CONFIG": path, "MAIN_API_KEY": "k"})
        self.assertEqual(config.default_upstream, "main")
        self.assertEqual(config.source, path)

    def test_server_settings_have_defaults(self) -> None:
        config = load(None, {})
        self.assertEqual(config.heartbeat_interval, 15.0)
        self.assertEqual(config.models_cache_ttl, 60.0)
        self.assertEqual(config.max_body_bytes, 32 * 1024 * 1024)
        self.assertEqual(config.max_sse_line_bytes, 4 * 1024 * 1024)
        self.assertEqual(config.health_probe_interval, 5.0)
        self.assertEqual(config.request_timeout, 60.0)
        self.assertEqual(config.max_connections, 10000)

    def test_demo_upstream_needs_no_base_url(self) -> None:
        config = parse({"upstreams": {"offline": {"provider": "demo"}}}, "conf.yaml", {})
        self.assertEqual(config.default_upstream, "offline")
        self.assertTrue(config.default.is_demo)


class SchemaTests(ConfigTestCase):
    """
    A valid file becomes the value objects the gateway runs on.
    """

    def test_minimum_schema_from_the_issue_parses(self) -> None:
        path = self.writeConfig(MINIMUM)
        config = load(path, {"MAIN_API_KEY": SECRET})
        self.assertEqual(config.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(list(config.upstreams), ["main"])
        self.assertEqual(config.default_upstream, "main")
        upstream = config.default
        self.assertEqual(upstream.name, "main")
        self.assertEqual(upstream.base_url, "http://127.0.0.1:9000/v1")
        self.assertEqual(upstream.api_key, SECRET)
        self.assertEqual(upstream.wire_api, "chat")
        self.assertEqual(upstream.provider, "openai")
        self.assertFalse(upstream.is_demo)
        self.assertEqual(upstream.timeouts, Timeouts())

    def test_single_upstream_is_the_default_without_default_upstream(self) -> None:
        config = parse(main(), "conf.yaml", {})
        self.assertEqual(config.default_upstream, "main")

    def test_base_url_trailing_slash_is_dropped(self) -> None:
        config = parse(main(base_url="https://api.example.com/v1/"), "conf.yaml", {})
        self.assertEqual(config.default.base_url, "https://api.example.com/v1")

    def test_every_upstream_field(self) -> None:
        data = main(
            wire_api="responses",
            provider="vllm",
            api_key="k",
            headers={"X-Org": "acme"},
            models=["qwen", "llama"],
            timeouts={"connect": 1, "first_byte": 2.5, "idle": 3, "total": 4},
        )
        upstream = parse(data, "conf.yaml", {}).default
        self.assertEqual(upstream.wire_api, "responses")
        self.assertEqual(upstream.provider, "vllm")
        self.assertEqual(upstream.api_key, "k")
        self.assertEqual(dict(upstream.headers), {"X-Org": "acme"})
        self.assertEqual(upstream.models, ("qwen", "llama"))
        self.assertEqual(
            upstream.timeouts, Timeouts(connect=1.0, first_byte=2.5, idle=3.0, total=4.0)
        )

    def test_zero_total_timeout_means_no_limit(self) -> None:
        upstream = parse(main(timeouts={"total": 0}), "conf.yaml", {}).default
        self.assertIsNone(upstream.timeouts.total)

    def test_partial_timeouts_keep_the_other_defaults(self) -> None:
        upstream = parse(main(timeouts={"first_byte": 600}), "conf.yaml", {}).default
        self.assertEqual(upstream.timeouts, Timeouts(first_byte=600.0))

    def test_empty_api_key_is_no_key(self) -> None:
        upstream = parse(main(api_key=""), "conf.yaml", {}).default
        self.assertIsNone(upstream.api_key)

    def test_model_routes(self) -> None:
        data = main()
        data["models"] = [
            {"match": "gpt-4o*", "upstream": "main", "model": "deepseek-chat"},
            {"match": "local", "upstream": "main"},
        ]
        config = parse(data, "conf.yaml", {})
        self.assertEqual(
            [(r.match, r.upstream, r.model) for r in config.models],
            [("gpt-4o*", "main", "deepseek-chat"), ("local", "main", None)],
        )

    def test_server_section(self) -> None:
        data = main()
        data["server"] = {
            "heartbeat_interval": 5,
            "models_cache_ttl": 0,
            "max_body_bytes": 1024,
            "max_sse_line_bytes": 2048,
            "health_probe_interval": 1.5,
        }
        config = parse(data, "conf.yaml", {})
        self.assertEqual(config.heartbeat_interval, 5.0)
        self.assertEqual(config.models_cache_ttl, 0.0)
        self.assertEqual(config.max_body_bytes, 1024)
        self.assertEqual(config.max_sse_line_bytes, 2048)
        self.assertEqual(config.health_probe_interval, 1.5)

    def test_several_upstreams_with_a_default(self) -> None:
        data: dict[str, Any] = {
            "upstreams": {
                "a": {"base_url": "http://a.test/v1"},
                "b": {"base_url": "https://b.test/v1", "wire_api": "responses"},
            },
            "default_upstream": "b",
        }
        config = parse(data, "conf.yaml", {})
        self.assertEqual(sorted(config.upstreams), ["a", "b"])
        self.assertEqual(config.default.base_url, "https://b.test/v1")

    def test_config_is_frozen(self) -> None:
        config = load(None, {})
        self.assertRaises(AttributeError, setattr, config, "listen", "tcp:1")


class InterpolationTests(ConfigTestCase):
    """
    C{${VAR}} and C{${VAR:-default}} in string values read the environment.
    """

    def test_variable_is_substituted(self) -> None:
        config = parse(main(api_key="${KEY}"), "conf.yaml", {"KEY": SECRET})
        self.assertEqual(config.default.api_key, SECRET)

    def test_variable_inside_a_longer_string(self) -> None:
        data = main(base_url="https://${RESOURCE}.openai.azure.com/openai/${VERSION}")
        config = parse(data, "conf.yaml", {"RESOURCE": "acme", "VERSION": "v1"})
        self.assertEqual(config.default.base_url, "https://acme.openai.azure.com/openai/v1")

    def test_default_is_used_when_the_variable_is_unset(self) -> None:
        config = parse(main(api_key="${KEY:-fallback}"), "conf.yaml", {})
        self.assertEqual(config.default.api_key, "fallback")

    def test_default_is_ignored_when_the_variable_is_set(self) -> None:
        config = parse(main(api_key="${KEY:-fallback}"), "conf.yaml", {"KEY": "real"})
        self.assertEqual(config.default.api_key, "real")

    def test_empty_default_makes_a_variable_optional(self) -> None:
        config = parse(main(api_key="${KEY:-}"), "conf.yaml", {})
        self.assertIsNone(config.default.api_key)

    def test_default_is_used_when_the_variable_is_set_but_empty(self) -> None:
        """
        As in the shell and docker compose, C{:-} covers a variable that is
        set to the empty string (C{docker run -e UPSTREAM_URL=}) as well as
        an unset one.
        """
        data = main(base_url="${UPSTREAM_URL:-http://127.0.0.1:9000/v1}")
        config = parse(data, "conf.yaml", {"UPSTREAM_URL": ""})
        self.assertEqual(config.default.base_url, "http://127.0.0.1:9000/v1")

    def test_variables_in_headers_listen_routes_and_numbers(self) -> None:
        data = main(headers={"api-key": "${AZ_KEY}"}, timeouts={"idle": "${IDLE:-42}"})
        data["listen"] = "tcp:${PORT}:interface=127.0.0.1"
        data["models"] = [{"match": "gpt-4o", "upstream": "main", "model": "${DEPLOYMENT}"}]
        environ = {"AZ_KEY": SECRET, "PORT": "9999", "DEPLOYMENT": "my-gpt"}
        config = parse(data, "conf.yaml", environ)
        self.assertEqual(config.default.headers["api-key"], SECRET)
        self.assertEqual(config.default.timeouts.idle, 42.0)
        self.assertEqual(config.listen, "tcp:9999:interface=127.0.0.1")
        self.assertEqual(config.models[0].model, "my-gpt")

    def test_substituted_values_are_not_interpolated_again(self) -> None:
        config = parse(main(api_key="${KEY}"), "conf.yaml", {"KEY": "${OTHER}", "OTHER": "x"})
        self.assertEqual(config.default.api_key, "${OTHER}")

    def test_unset_variable_names_file_key_and_variable(self) -> None:
        path = self.writeConfig(MINIMUM)
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(len(error.problems), 1, error.problems)
        [problem] = error.problems
        self.assertIn(path, problem)
        self.assertIn("upstreams.main.api_key", problem)
        self.assertIn("MAIN_API_KEY", problem)
        self.assertIn("not set", problem)

    def test_every_unset_variable_is_reported(self) -> None:
        data = main(api_key="${A}", headers={"X": "${B}"})
        data["listen"] = "tcp:${C}:interface=127.0.0.1"
        problems = self.problems(data)
        self.assertEqual(len(problems), 3, problems)
        for key, variable in [
            ("upstreams.main.api_key", "A"),
            ("upstreams.main.headers.X", "B"),
            ("listen", "C"),
        ]:
            self.assertTrue(
                any(f": {key}: " in p and f"variable {variable} " in p for p in problems),
                (key, variable, problems),
            )


class EnvironmentOverrideTests(ConfigTestCase):
    """
    C{CODEXGW_*} variables change the config without editing a file.
    """

    def test_upstream_url_replaces_the_demo(self) -> None:
        config = load(None, {"CODEXGW_UPSTREAM_URL": "https://api.example.com/v1/"})
        self.assertEqual(list(config.upstreams), ["main"])
        self.assertEqual(config.default_upstream, "main")
        upstream = config.default
        self.assertFalse(upstream.is_demo)
        self.assertEqual(upstream.provider, "openai")
        self.assertEqual(upstream.base_url, "https://api.example.com/v1")
        self.assertEqual(upstream.wire_api, "chat")
        self.assertIsNone(upstream.api_key)
        self.assertEqual(upstream.models, ())

    def test_upstream_url_with_key_and_wire_api(self) -> None:
        environ = {
            "CODEXGW_UPSTREAM_URL": "https://api.example.com/v1",
            "CODEXGW_UPSTREAM_API_KEY": SECRET,
            "CODEXGW_UPSTREAM_WIRE_API": "responses",
        }
        upstream = load(None, environ).default
        self.assertEqual(upstream.api_key, SECRET)
        self.assertEqual(upstream.wire_api, "responses")

    def test_upstream_url_replaces_the_demo_default_of_the_shipped_config(self) -> None:
        config = load(
            CONF.child("codexgw.yaml").path, {"CODEXGW_UPSTREAM_URL": "http://gpu.test/v1"}
        )
        self.assertEqual(config.default_upstream, "main")
        self.assertFalse(config.default.is_demo)
        self.assertEqual(config.default.base_url, "http://gpu.test/v1")

    def test_upstream_url_repoints_the_files_default_keeping_its_settings(self) -> None:
        data = main(api_key="from-file", timeouts={"idle": 7}, provider="vllm")
        config = parse(data, "conf.yaml", {"CODEXGW_UPSTREAM_URL": "http://other.test/v1"})
        upstream = config.default
        self.assertEqual(upstream.base_url, "http://other.test/v1")
        self.assertEqual(upstream.api_key, "from-file")
        self.assertEqual(upstream.provider, "vllm")
        self.assertEqual(upstream.timeouts.idle, 7.0)

    def test_upstream_api_key_variable_beats_the_file(self) -> None:
        environ = {
            "CODEXGW_UPSTREAM_URL": "http://other.test/v1",
            "CODEXGW_UPSTREAM_API_KEY": "env",
        }
        config = parse(main(api_key="file"), "conf.yaml", environ)
        self.assertEqual(config.default.api_key, "env")

    def test_bad_upstream_wire_api_variable_is_reported_once(self) -> None:
        environ = {"CODEXGW_UPSTREAM_URL": "http://x.test/v1", "CODEXGW_UPSTREAM_WIRE_API": "grpc"}
        problems = self.problems({}, environ)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("'grpc'", problems[0])
        self.assertIn("chat, responses", problems[0])

    def test_non_url_upstream_url_variable_is_rejected(self) -> None:
        """
        A URL from the environment is checked like one from a file: without
        the scheme the gateway would only fail at the first request.
        """
        error = self.assertRaises(
            ConfigError, load, None, {"CODEXGW_UPSTREAM_URL": "localhost:9000/v1"}
        )
        self.assertEqual(len(error.problems), 1, error.problems)
        self.assertIn("CODEXGW_UPSTREAM_URL", error.problems[0])
        self.assertIn("http://", error.problems[0])

    def test_listen_variable_overrides_the_file(self) -> None:
        data = main()
        data["listen"] = "tcp:8080:interface=127.0.0.1"
        config = parse(data, "conf.yaml", {"CODEXGW_LISTEN": "tcp:9090:interface=127.0.0.1"})
        self.assertEqual(config.listen, "tcp:9090:interface=127.0.0.1")

    def test_listen_variable_overrides_the_defaults(self) -> None:
        config = load(None, {"CODEXGW_LISTEN": "unix:/run/codexgw.sock"})
        self.assertEqual(config.listen, "unix:/run/codexgw.sock")

    def test_default_upstream_variable_picks_among_upstreams(self) -> None:
        data: dict[str, Any] = {
            "upstreams": {"a": {"base_url": "http://a.test"}, "b": {"base_url": "http://b.test"}},
            "default_upstream": "a",
        }
        config = parse(data, "conf.yaml", {"CODEXGW_DEFAULT_UPSTREAM": "b"})
        self.assertEqual(config.default_upstream, "b")

    def test_default_upstream_variable_naming_no_upstream_is_an_error(self) -> None:
        self.assertOneProblem(
            main(),
            "default_upstream",
            "'nope'",
            "main",
            environ={"CODEXGW_DEFAULT_UPSTREAM": "nope"},
        )


class ErrorTests(ConfigTestCase):
    """
    Each problem names the file, the dotted key and what was expected.
    """

    def test_bad_wire_api(self) -> None:
        self.assertOneProblem(
            main(wire_api="completions"),
            "upstreams.main.wire_api",
            "chat, responses",
            "'completions'",
        )

    def test_missing_base_url(self) -> None:
        self.assertOneProblem(
            {"upstreams": {"main": {"wire_api": "chat"}}},
            "upstreams.main.base_url",
            "required",
        )

    def test_empty_base_url_is_missing(self) -> None:
        self.assertOneProblem(main(base_url=""), "upstreams.main.base_url", "required")

    def test_non_url_base_url(self) -> None:
        for bad in ("127.0.0.1:9000/v1", "ftp://files.test/v1", "http://", "api.openai.com"):
            self.assertOneProblem(
                main(base_url=bad), "upstreams.main.base_url", "http:// or https:// URL", repr(bad)
            )

    def test_unknown_top_level_key(self) -> None:
        data = main()
        data["listne"] = "tcp:1"
        self.assertOneProblem(data, ": listne: ", "unknown key", "listen")

    def test_unknown_upstream_key(self) -> None:
        self.assertOneProblem(
            main(base_uri="http://x"), "upstreams.main.base_uri", "unknown key", "base_url"
        )

    def test_unknown_server_key(self) -> None:
        data = main()
        data["server"] = {"heartbeat": 5}
        self.assertOneProblem(data, "server.heartbeat", "unknown key", "heartbeat_interval")

    def test_unknown_timeouts_key(self) -> None:
        self.assertOneProblem(
            main(timeouts={"conect": 5}), "upstreams.main.timeouts.conect", "unknown key", "connect"
        )

    def test_unknown_model_rule_key(self) -> None:
        data = main()
        data["models"] = [{"match": "x", "upstream": "main", "upsteam": "main"}]
        self.assertOneProblem(data, "models[0].upsteam", "unknown key")

    def test_default_upstream_naming_a_missing_upstream(self) -> None:
        data = main()
        data["default_upstream"] = "mian"
        self.assertOneProblem(data, "default_upstream", "'mian'", "main")

    def test_default_upstream_required_with_several_upstreams(self) -> None:
        data = {
            "upstreams": {"a": {"base_url": "http://a.test"}, "b": {"base_url": "http://b.test"}}
        }
        self.assertOneProblem(data, "default_upstream", "required")

    def test_model_rule_pointing_at_a_missing_upstream(self) -> None:
        data = main()
        data["models"] = [
            {"match": "a", "upstream": "main"},
            {"match": "gpt-4o*", "upstream": "azure"},
        ]
        self.assertOneProblem(data, "models[1].upstream", "'azure'", "main")

    def test_model_rule_without_match(self) -> None:
        data = main()
        data["models"] = [{"upstream": "main"}]
        self.assertOneProblem(data, "models[0].match", "required")

    def test_negative_timeout(self) -> None:
        self.assertOneProblem(
            main(timeouts={"idle": -1}), "upstreams.main.timeouts.idle", "non-negative", "-1"
        )

    def test_non_numeric_timeout(self) -> None:
        self.assertOneProblem(
            main(timeouts={"connect": "soon"}), "upstreams.main.timeouts.connect", "'soon'"
        )

    def test_boolean_is_not_a_number(self) -> None:
        self.assertOneProblem(main(timeouts={"total": True}), "upstreams.main.timeouts.total")

    def test_negative_server_interval(self) -> None:
        data = main()
        data["server"] = {"models_cache_ttl": -5}
        self.assertOneProblem(data, "server.models_cache_ttl", "non-negative")

    def test_connection_limits_take_zero_for_off(self) -> None:
        data = main()
        data["server"] = {"request_timeout": 0, "max_connections": 0}
        config = parse(data, "conf.yaml", {})
        self.assertEqual((config.request_timeout, config.max_connections), (0.0, 0))
        data["server"] = {"request_timeout": 2.5, "max_connections": "${CAP}"}
        config = parse(data, "conf.yaml", {"CAP": "300"})
        self.assertEqual((config.request_timeout, config.max_connections), (2.5, 300))

    def test_connection_limits_refuse_nonsense(self) -> None:
        data = main()
        data["server"] = {"request_timeout": -1}
        self.assertOneProblem(data, "server.request_timeout", "non-negative")
        for bad in (-1, 1.5, "lots", True):
            data["server"] = {"max_connections": bad}
            self.assertOneProblem(data, "server.max_connections", "whole number")

    def test_zero_heartbeat_interval(self) -> None:
        data = main()
        data["server"] = {"heartbeat_interval": 0}
        self.assertOneProblem(data, "server.heartbeat_interval", "positive")

    def test_byte_limits_are_positive_whole_numbers(self) -> None:
        for bad in (0, -1, 1.5, "lots"):
            data = main()
            data["server"] = {"max_body_bytes": bad}
            self.assertOneProblem(data, "server.max_body_bytes", "positive whole number")

    def test_top_level_must_be_a_mapping(self) -> None:
        problems = self.problems(["listen", "tcp:8080"])
        self.assertEqual(problems, ["conf.yaml: expected a mapping at the top level, got a list"])

    def test_upstreams_must_be_a_mapping(self) -> None:
        self.assertOneProblem(
            {"upstreams": [{"base_url": "http://a"}]},
            ": upstreams: ",
            "expected a mapping",
            "a list",
        )

    def test_upstream_must_be_a_mapping(self) -> None:
        self.assertOneProblem(
            {"upstreams": {"main": "http://127.0.0.1:9000/v1"}},
            "upstreams.main",
            "expected a mapping",
            "a string",
        )

    def test_upstream_with_nothing_under_it(self) -> None:
        self.assertOneProblem({"upstreams": {"main": None}}, "upstreams.main", "expected a mapping")

    def test_timeouts_must_be_a_mapping(self) -> None:
        self.assertOneProblem(
            main(timeouts=[10, 20]), "upstreams.main.timeouts", "expected a mapping", "a list"
        )

    def test_headers_must_be_a_mapping_of_strings(self) -> None:
        self.assertOneProblem(
            main(headers=["X-A: b"]), "upstreams.main.headers", "expected a mapping", "a list"
        )
        self.assertOneProblem(
            main(headers={"X-Count": 3}), "upstreams.main.headers.X-Count", "expected a string"
        )

    def test_upstream_models_must_be_a_list(self) -> None:
        self.assertOneProblem(
            main(models="gpt-4o"), "upstreams.main.models", "expected a list", "a string"
        )

    def test_model_rules_must_be_a_list_of_mappings(self) -> None:
        data = main()
        data["models"] = {"gpt-4o": "main"}
        self.assertOneProblem(data, ": models: ", "expected a list", "a mapping")
        data["models"] = ["gpt-4o"]
        self.assertOneProblem(data, "models[0]", "expected a mapping", "a string")

    def test_server_must_be_a_mapping(self) -> None:
        data = main()
        data["server"] = ["heartbeat_interval", 5]
        self.assertOneProblem(data, ": server: ", "expected a mapping", "a list")

    def test_string_values_must_be_strings(self) -> None:
        self.assertIn(
            "conf.yaml: upstreams.main.base_url: expected a string, got a number",
            self.problems(main(base_url=9000)),
        )
        self.assertOneProblem(
            main(api_key=["a"]), "upstreams.main.api_key", "expected a string", "a list"
        )
        data = main()
        data["listen"] = 8080
        self.assertOneProblem(data, ": listen: ", "expected a string", "a number")

    def test_upstream_name_with_spaces_is_rejected(self) -> None:
        self.assertOneProblem(
            {"upstreams": {"my upstream": {"base_url": "http://a.test"}}},
            "upstreams.my upstream",
            "letters, digits",
        )

    def test_all_problems_are_reported_at_once(self) -> None:
        data: dict[str, Any] = {
            "listne": "tcp:8080",
            "upstreams": {
                "main": {"headers": ["X-A: b"], "timeouts": {"idle": -3}, "base_uri": "x"},
                "other": {"base_url": "localhost:1", "api_key": "${UNSET_KEY}"},
            },
            "default_upstream": "missing",
            "models": [{"match": "gpt*", "upstream": "nowhere"}],
            "server": {"heartbeat": 1},
        }
        problems = self.problems(data)
        expected = [
            ": listne: ",
            "upstreams.main.headers",
            "upstreams.main.base_url",
            "upstreams.main.timeouts.idle",
            "upstreams.main.base_uri",
            "upstreams.other.base_url",
            "upstreams.other.api_key",
            ": default_upstream: ",
            "models[0].upstream",
            "server.heartbeat",
        ]
        for key in expected:
            self.assertEqual(len([p for p in problems if key in p]), 1, (key, problems))
        self.assertEqual(len(problems), len(expected), problems)
        for problem in problems:
            self.assertTrue(problem.startswith("conf.yaml: "), problem)

    def test_error_message_lists_every_problem(self) -> None:
        data = main(wire_api="grpc", timeouts={"idle": -1})
        error = self.assertRaises(ConfigError, parse, data, "conf.yaml", {})
        message = str(error)
        self.assertTrue(message.startswith("invalid configuration:"))
        for problem in error.problems:
            self.assertIn(problem, message)


class FileTests(ConfigTestCase):
    """
    L{load} reports files it cannot read or parse as L{ConfigError}.
    """

    def test_invalid_yaml_reports_line_and_column(self) -> None:
        path = self.writeConfig(
            'listen: "tcp:8080"\nupstreams:\n  main:\n    base_url: [unclosed\n    wire_api: chat\n'
        )
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(len(error.problems), 1)
        problem = error.problems[0]
        self.assertTrue(problem.startswith(f"{path}: not valid YAML (line 5, column 13)"), problem)

    def test_bad_indentation_reports_its_line(self) -> None:
        path = self.writeConfig("listen: x\n  bad: indent\n")
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertIn("(line 2, column 6)", error.problems[0])

    def test_missing_file(self) -> None:
        path = FilePath(self.mktemp()).path
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(error.problems, [f"{path}: cannot read: No such file or directory"])

    def test_directory_instead_of_a_file(self) -> None:
        path = FilePath(self.mktemp())
        path.makedirs()
        error = self.assertRaises(ConfigError, load, path.path, {})
        self.assertEqual(len(error.problems), 1)
        self.assertTrue(error.problems[0].startswith(f"{path.path}: cannot read: "))

    def test_missing_file_named_by_CODEXGW_CONFIG(self) -> None:
        path = FilePath(self.mktemp()).path
        error = self.assertRaises(ConfigError, load, None, {"CODEXGW_CONFIG": path})
        self.assertIn(path, error.problems[0])

    def test_file_that_is_not_utf8_is_a_config_error(self) -> None:
        """
        A file saved in Latin-1 is reported like any other unreadable file,
        not with a UnicodeDecodeError traceback.
        """
        path = self.writeConfig(b'listen: "tcp:8080"\n# caf\xe9\n')
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(len(error.problems), 1)
        self.assertIn(path, error.problems[0])

    def test_problems_name_the_file(self) -> None:
        path = self.writeConfig("upstreams:\n  main:\n    wire_api: chat\n")
        error = self.assertRaises(ConfigError, load, path, {})
        self.assertEqual(
            error.problems,
            [
                f"{path}: upstreams.main.base_url: required: the upstream's URL, e.g. http://127.0.0.1:9000/v1"
            ],
        )


class SecretTests(ConfigTestCase):
    """
    Keys are read from the config but never shown by it.
    """

    def test_api_key_is_not_in_the_repr(self) -> None:
        path = self.writeConfig(MINIMUM)
        config = load(path, {"MAIN_API_KEY": SECRET})
        self.assertEqual(config.default.api_key, SECRET)
        self.assertNotIn(SECRET, repr(config))
        self.assertNotIn(SECRET, repr(config.default))
        self.assertNotIn(SECRET, str(config))

    def test_api_key_from_the_environment_is_not_in_the_repr(self) -> None:
        environ = {"CODEXGW_UPSTREAM_URL": "http://x.test/v1", "CODEXGW_UPSTREAM_API_KEY": SECRET}
        config = load(None, environ)
        self.assertEqual(config.default.api_key, SECRET)
        self.assertNotIn(SECRET, repr(config))

    def test_header_holding_a_key_is_not_in_the_repr(self) -> None:
        config = parse(main(headers={"api-key": SECRET}), "conf.yaml", {})
        self.assertEqual(config.default.headers["api-key"], SECRET)
        self.assertNotIn(SECRET, repr(config))

    def test_api_key_is_not_in_the_errors_of_an_invalid_config(self) -> None:
        data = main(api_key="${KEY}", wire_api="grpc", timeouts={"idle": -1})
        error = self.assertRaises(ConfigError, parse, data, "conf.yaml", {"KEY": SECRET})
        self.assertNotIn(SECRET, str(error))


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


class ShippedConfigTests(ConfigTestCase):
    """
    Every file in C{conf/} and C{conf/examples/} is a valid config.
    """

    def shippedFiles(self) -> list[FilePath[str]]:
        files = sorted(CONF.globChildren("*.yaml") + CONF.child("examples").globChildren("*.yaml"))
        # The test must not pass by finding nothing.
        self.assertIn("codexgw.yaml", [f.basename() for f in files])
        self.assertGreaterEqual(len(files), 6)
        return files

    def environFor(self, path: FilePath[str]) -> dict[str, str]:
        """A value for every variable the file mentions."""
        names = _VARIABLE.findall(path.getContent().decode("utf-8"))
        return {name: f"value-of-{name.lower().replace('_', '-')}" for name in names}

    def test_every_shipped_config_loads(self) -> None:
        for path in self.shippedFiles():
            environ = self.environFor(path)
            try:
                config = load(path.path, environ)
            except ConfigError as e:
                self.fail(f"{path.path} with {environ}: {e}")
            self.assertEqual(config.source, path.path)
            self.assertIn(config.default_upstream, config.upstreams)

    def test_examples_point_at_a_real_provider(self) -> None:
        for path in CONF.child("examples").globChildren("*.yaml"):
            config = load(path.path, self.environFor(path))
            self.assertFalse(config.default.is_demo, path.path)
            self.assertRegex(config.default.base_url, r"^https?://", path.path)

    def test_example_keys_reach_the_upstream(self) -> None:
        """The variables an example references end up in the upstream it configures."""
        for path in CONF.child("examples").globChildren("*.yaml"):
            environ = self.environFor(path)
            upstream = load(path.path, environ).default
            for name, value in environ.items():
                if name.endswith("_API_KEY"):
                    self.assertIn(
                        value, [upstream.api_key, *upstream.headers.values()], (path.path, name)
                    )

    def test_shipped_default_config_is_the_demo(self) -> None:
        config = load(CONF.child("codexgw.yaml").path, {})
        self.assertEqual(config.default_upstream, "demo")
        self.assertTrue(config.default.is_demo)
        self.assertEqual(config.listen, DEFAULT_LISTEN)

    def test_examples_with_a_required_key_fail_without_it(self) -> None:
        path = CONF.child("examples").child("openai.yaml")
        error = self.assertRaises(ConfigError, load, path.path, {})
        self.assertEqual(len(error.problems), 1, error.problems)
        self.assertIn("OPENAI_API_KEY", error.problems[0])
        self.assertIn("upstreams.openai.api_key", error.problems[0])


class CredentialsInURLTests(ConfigTestCase):
    """
    A C{base_url} with C{user:password@} (or a lone C{token@}) is refused,
    with a message saying where credentials go and never repeating them.
    """

    def assertRefused(self, problem: str, secret: str = "s3cret") -> None:
        self.assertIn("credentials do not go in the URL", problem)
        self.assertNotIn(secret, problem)

    def test_credentials_in_a_base_url_are_refused_saying_where_they_go(self) -> None:
        for url in (
            "https://bob:s3cret@api.example.com/v1",
            "https://s3cret@api.example.com/v1",
            "http://bob:s3cret@127.0.0.1:9000",
            "https://bob:s3cret:with:colons@[::1]:9000/v1?x=1",
        ):
            problem = self.assertOneProblem(
                main(base_url=url),
                "conf.yaml: upstreams.main.base_url: ",
                "upstreams.main.api_key",
                "upstreams.main.headers",
            )
            self.assertRefused(problem)
            self.assertNotIn("bob", problem)

    def test_the_message_shows_where_the_credentials_were_without_them(self) -> None:
        problem = self.assertOneProblem(
            main(base_url="https://bob:s3cret@api.example.com/v1"), "upstreams.main.base_url"
        )
        self.assertIn("'https://***@api.example.com/v1'", problem)

    def test_a_password_with_an_at_sign_is_not_half_echoed(self) -> None:
        problem = self.assertOneProblem(
            main(base_url="https://bob:s3c@ret@api.example.com/v1"), "upstreams.main.base_url"
        )
        self.assertRefused(problem, "ret")
        self.assertIn("'https://***@api.example.com/v1'", problem)

    def test_credentials_from_an_interpolated_variable_are_refused_unechoed(self) -> None:
        problem = self.assertOneProblem(
            main(base_url="${MAIN_URL}"),
            "upstreams.main.base_url",
            environ={"MAIN_URL": "https://bob:s3cret@api.example.com/v1"},
        )
        self.assertRefused(problem)

    def test_a_url_that_is_wrong_in_scheme_too_does_not_echo_its_password(self) -> None:
        problem = self.assertOneProblem(
            main(base_url="ftp://bob:s3cret@files.example.com/v1"),
            "upstreams.main.base_url",
            "http:// or https:// URL",
            "'ftp://***@files.example.com/v1'",
        )
        self.assertNotIn("s3cret", problem)

    def test_an_at_sign_after_the_host_is_no_credential(self) -> None:
        url = "http://127.0.0.1:9000/v1/@scope?tag=a@b#x@y"
        self.assertEqual(parse(main(base_url=url), "conf.yaml", {}).default.base_url, url)

    def test_credentials_in_the_upstream_url_variable_are_refused_unechoed(self) -> None:
        error = self.assertRaises(
            ConfigError,
            load,
            None,
            {"CODEXGW_UPSTREAM_URL": "https://bob:s3cret@api.example.com/v1"},
        )
        [problem] = error.problems
        self.assertTrue(problem.startswith("<defaults>: CODEXGW_UPSTREAM_URL: "), problem)
        self.assertRefused(problem)
        self.assertIn("CODEXGW_UPSTREAM_API_KEY", problem)
        self.assertNotIn("s3cret", str(error))

    def test_every_upstream_with_credentials_is_reported_at_once(self) -> None:
        data = {
            "upstreams": {
                "a": {"base_url": "https://u:s3cret@a.example.com/v1"},
                "b": {"base_url": "https://u:s3cret@b.example.com/v1", "wire_api": "soap"},
            },
            "default_upstream": "a",
        }
        environ = {"CODEXGW_UPSTREAM_URL": "https://s3cret@c.example.com/v1"}
        problems = self.problems(data, environ)
        self.assertEqual(
            [p.split(": ")[1] for p in problems],
            [
                "upstreams.a.base_url",
                "upstreams.b.base_url",
                "upstreams.b.wire_api",
                "CODEXGW_UPSTREAM_URL",
            ],
        )
        self.assertNotIn("s3cret", "\n".join(problems))


class SealKeyTests(ConfigTestCase):
    """
    C{server.seal_key}: the secret every replica seals and verifies the
    gateway's tokens with; a secret like an upstream key.
    """

    def test_no_seal_key_by_default(self) -> None:
        self.assertIsNone(load(None, {}).seal_key)
        self.assertIsNone(parse({"server": {"seal_key": ""}}, "conf.yaml", {}).seal_key)

    def test_seal_key_is_interpolated(self) -> None:
        config = parse({"server": {"seal_key": "${SEAL}"}}, "conf.yaml", {"SEAL": SECRET})
        self.assertEqual(config.seal_key, SECRET)

    def test_seal_key_variable_beats_the_file(self) -> None:
        data = {"server": {"seal_key": "from-file"}}
        config = parse(data, "conf.yaml", {"CODEXGW_SEAL_KEY": SECRET})
        self.assertEqual(config.seal_key, SECRET)
        self.assertEqual(load(None, {"CODEXGW_SEAL_KEY": SECRET}).seal_key, SECRET)

    def test_seal_key_must_be_a_string(self) -> None:
        self.assertOneProblem(
            {"server": {"seal_key": 42}}, "server.seal_key", "expected a string", "a number"
        )

    def test_seal_key_is_never_shown_and_is_redacted(self) -> None:
        from codexgw.obs.redaction import configSecrets

        config = parse({"server": {"seal_key": SECRET}}, "conf.yaml", {})
        self.assertNotIn(SECRET, repr(config))
        self.assertIn(SECRET, configSecrets(config))


class MergedTypesTests(SynchronousTestCase):
    """A config block that is a value type elsewhere is that type, not a copy."""

    def test_retries_are_the_retry_policy(self) -> None:
        from codexgw.upstream.retry import RetryPolicy

        retries = parse(main(retries={"max_attempts": 5}), "conf.yaml", {}).default.retries
        self.assertEqual(retries, RetryPolicy(max_attempts=5))


class SchemaSecretTests(SynchronousTestCase):
    """What the schema marks secret is kept out of reprs by its declaration."""

    def test_every_secret_in_the_schema_stays_out_of_reprs(self) -> None:
        """A key the schema marks secret is declared C{repr=False}."""
        from codexgw.config.reference import walk

        secrets = [(path, f.repr) for path, f, key, _, _ in walk() if key.secret]
        self.assertIn(("server.seal_key", False), secrets)
        self.assertEqual([path for path, shown in secrets if shown], [])
