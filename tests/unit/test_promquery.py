"""PromQuerySource's parsing and requests, against canned query API answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from autonomic.errors import SourceError
from autonomic.model import Sample
from autonomic.monitor.promquery import (
    PromQuerySource,
    PromQuerySpec,
    SharedPromQuery,
    parse_query_response,
)
from autonomic.monitor.unanswered import Unanswered

BASE = "http://prom.test:9090"
NOW = 1_700_000_000.0


def vector(*items: tuple[dict[str, str], str], ts: float = NOW) -> dict[str, Any]:
    result = [{"metric": labels, "value": [ts, value]} for labels, value in items]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def matrix(*items: tuple[dict[str, str], list[tuple[float, str]]]) -> dict[str, Any]:
    result = [{"metric": labels, "values": [[ts, v] for ts, v in points]} for labels, points in items]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


Handler = Callable[[httpx.Request], httpx.Response]


def source(handler: Handler, service: str = "web", **spec: Any) -> PromQuerySource:
    spec.setdefault("query", "up")
    spec.setdefault("metric", "m")
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return PromQuerySource(service, PromQuerySpec(url=BASE, **spec), client=client)


def answer(body: Any, status: int = 200) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return handle


def values(samples: Any) -> list[tuple[float, float]]:
    return [(s.ts, s.value) for s in samples]


# --- spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"metric": ""}, "metric"),
        ({"url": "prom:9090"}, "url"),
        ({"mode": "stream"}, "mode"),
        ({"step_s": 0}, "step_s"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"promql": "up"}, "promql"),
    ],
)
def test_spec_rejects_bad_fields_naming_them(fields: dict[str, Any], field: str) -> None:
    data = {"url": BASE, "query": "up", "metric": "m", **fields}
    with pytest.raises(ValidationError) as err:
        PromQuerySpec.model_validate(data)
    assert field in str(err.value)


def test_spec_rejects_a_range_with_more_points_than_prometheus_allows() -> None:
    with pytest.raises(ValidationError, match="range_s / step_s"):
        PromQuerySpec(url=BASE, query="up", metric="m", mode="range", range_s=86_400, step_s=1)


def test_spec_defaults_and_type_tag() -> None:
    spec = PromQuerySpec(url=BASE + "/", query="up", metric="m")
    assert (spec.type, spec.mode, spec.range_s, spec.step_s, spec.timeout_s) == ("promql", "instant", 300, 15, 5)
    assert spec.url == BASE  # trailing slash dropped so paths join cleanly


# --- instant ------------------------------------------------------------------------------


def test_instant_query_sends_query_and_time_and_returns_one_sample_at_the_eval_time() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector(({"job": "web"}, "42.5"), ts=NOW - 0.5))

    src = source(handle, query='rate(x[1m]) > 0', metric="error_rate")
    samples = src.collect(NOW)
    assert samples == [Sample("web", "error_rate", NOW - 0.5, 42.5)]
    assert src.name == "promql:web:error_rate"
    request = seen[0]
    assert request.url.path == "/api/v1/query"
    assert request.url.params["query"] == "rate(x[1m]) > 0"
    assert float(request.url.params["time"]) == NOW


def test_empty_vector_is_no_samples() -> None:
    assert source(answer(vector())).collect(NOW) == []


def test_several_series_without_label_rule_are_summed() -> None:
    body = vector(({"instance": "a"}, "1.5"), ({"instance": "b"}, "2"), ({"instance": "c"}, "NaN"))
    assert values(source(answer(body)).collect(NOW)) == [(NOW, 3.5)]


def test_label_rule_keeps_only_the_series_labelled_with_the_service() -> None:
    body = vector(({"job": "web"}, "1"), ({"job": "db"}, "7"), ({"instance": "z"}, "9"))
    assert values(source(answer(body), service="web", label="job").collect(NOW)) == [(NOW, 1.0)]
    assert source(answer(body), service="cache", label="job").collect(NOW) == []


@pytest.mark.parametrize("text", ["NaN", "+Inf", "-Inf"])
def test_non_finite_values_are_dropped(text: str) -> None:
    assert source(answer(vector(({}, text)))).collect(NOW) == []


def test_series_whose_sum_overflows_the_float_range_give_no_sample_not_inf() -> None:
    """Each value is finite (kept), their sum is not: it is no number, as +Inf is not."""
    body = matrix(({"i": "a"}, [(NOW - 10, "1e308"), (NOW, "1e308")]), ({"i": "b"}, [(NOW, "1e308")]))
    assert values(source(answer(body), mode="range").collect(NOW)) == [(NOW - 10, 1e308)]


def test_scalar_result_is_one_sample() -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [NOW, "3"]}}
    assert values(source(answer(body)).collect(NOW)) == [(NOW, 3.0)]


def test_unknown_extra_keys_in_the_answer_are_ignored() -> None:
    body = vector(({}, "1"))
    body["warnings"] = ["something"]
    body["infos"] = ["more"]
    assert values(source(answer(body)).collect(NOW)) == [(NOW, 1.0)]


def test_instant_query_answered_with_a_matrix_is_an_error_naming_the_query_not_the_past_points() -> None:
    """``up[1m]`` asked as an instant query: each poll would store the same past points again."""
    body = matrix(({}, [(NOW - 20, "1"), (NOW - 10, "0"), (NOW, "1")]))
    message = collect_error(answer(body), query="up[1m]")
    assert message == (f"{BASE}/api/v1/query: query 'up[1m]' gives a range vector (the points of a past range), "
                       "which an instant query takes no sample of: put a function over the range "
                       "(rate, avg_over_time, ...) or use mode: range")


# --- range --------------------------------------------------------------------------------


def test_range_query_sums_series_per_timestamp_and_then_returns_only_newer_points() -> None:
    seen: list[httpx.Request] = []
    bodies = [
        matrix(({"i": "a"}, [(NOW - 20, "1"), (NOW - 10, "2"), (NOW, "NaN")]), ({"i": "b"}, [(NOW - 10, "10")])),
        matrix(({"i": "a"}, [(NOW - 10, "2"), (NOW, "3"), (NOW + 10, "4")])),
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=bodies[len(seen) - 1])

    src = source(handle, mode="range", range_s=60, step_s=10)
    assert values(src.collect(NOW)) == [(NOW - 20, 1.0), (NOW - 10, 12.0)]
    params = seen[0].url.params
    assert seen[0].url.path == "/api/v1/query_range"
    assert (float(params["start"]), float(params["end"]), float(params["step"])) == (NOW - 60, NOW, 10)

    assert values(src.collect(NOW + 10)) == [(NOW, 3.0), (NOW + 10, 4.0)]  # NOW - 10 already returned
    assert float(seen[1].url.params["start"]) == NOW  # continues on the grid after the last point


def test_range_query_polled_again_before_the_next_step_asks_nothing() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=matrix(({}, [(NOW, "1")])))

    src = source(handle, mode="range", range_s=60, step_s=10)
    assert values(src.collect(NOW)) == [(NOW, 1.0)]
    assert src.collect(NOW + 5) == []
    assert len(calls) == 1


# --- one query shared by several services ---------------------------------------------------


def test_shared_query_asks_once_and_gives_each_service_what_its_own_source_would() -> None:
    body = vector(({"job": "web", "i": "1"}, "1"), ({"job": "db"}, "7"), ({"job": "web", "i": "2"}, "0.5"),
                  ({"job": "cache"}, "NaN"), ({"instance": "z"}, "9"), ({"job": "db"}, "1e300"))
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=body)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    specs = [("web", {"label": "job"}), ("db", {"label": "job"}), ("cache", {"label": "job"}),
             ("gone", {"label": "job"}), ("all", {}), ("web", {"label": "i", "metric": "other"})]

    def each() -> list[PromQuerySource]:
        return [PromQuerySource(svc, PromQuerySpec(url=BASE, query="q", **{"metric": "m", **kw}), client)
                for svc, kw in specs]

    expected = [s for src in each() for s in src.collect(NOW)]
    assert len(calls) == len(specs)
    assert SharedPromQuery(each()).collect(NOW) == expected
    assert len(calls) == len(specs) + 1
    assert {(s.service, s.value) for s in expected} == {("web", 1.5), ("db", 7 + 1e300), ("all", 9 + 8.5 + 1e300)}


def test_a_shared_query_refuses_sources_that_do_not_ask_one_request() -> None:
    def make(**kw: Any) -> PromQuerySource:
        return PromQuerySource("web", PromQuerySpec(url=BASE, **{"query": "q", "metric": "m", **kw}))

    for group in ([make(), make(query="other")], [make(mode="range"), make(mode="range")],
                  [make(), make(timeout_s=1)], []):
        with pytest.raises(ValueError, match="instant-mode sources asking one query"):
            SharedPromQuery(group)


def test_a_shared_query_that_fails_is_one_source_error_naming_the_url() -> None:
    client = httpx.Client(transport=httpx.MockTransport(answer(b"oops", 502)))
    shared = SharedPromQuery([PromQuerySource(svc, PromQuerySpec(url=BASE, query="q", metric="m"), client)
                              for svc in ("a", "b")])
    with pytest.raises(SourceError, match=f"^{BASE}/api/v1/query: HTTP 502"):
        shared.collect(NOW)


# --- a Prometheus that does not answer ------------------------------------------------------


def _sources_sharing_one_record(handler: Handler, count: int) -> list[PromQuerySource]:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    unanswered = Unanswered()
    return [PromQuerySource(f"s{i}", PromQuerySpec(url=BASE, query=f"q{i}", metric="m"), client, unanswered)
            for i in range(count)]


def _outcomes(sources: list[PromQuerySource], now: float) -> list[str]:
    out = []
    for src in sources:
        try:
            out.append(f"{len(src.collect(now))} sample")
        except SourceError as exc:
            out.append("not asked" if "not asked" in str(exc) else "timed out")
    return out


def test_after_two_queries_in_a_row_without_an_answer_the_rest_of_the_collection_does_not_ask_that_prometheus() -> None:
    asked: list[str] = []

    def hangs(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        raise httpx.ReadTimeout("no answer", request=request)

    sources = _sources_sharing_one_record(hangs, 4)
    assert _outcomes(sources, NOW) == ["timed out", "timed out", "not asked", "not asked"]
    assert asked == ["q0", "q1"]
    assert _outcomes(sources, NOW + 5) == ["timed out", "timed out", "not asked", "not asked"]  # asked again
    assert asked == ["q0", "q1", "q0", "q1"]


def test_one_query_slow_on_its_own_does_not_keep_the_others_from_being_asked() -> None:
    """An answer between two timeouts ends the run: q0 and q2 time out, q1 and q3 answer."""
    def every_other(request: httpx.Request) -> httpx.Response:
        if request.url.params["query"] in ("q0", "q2"):
            raise httpx.ReadTimeout("slow query", request=request)
        return httpx.Response(200, json=vector(({}, "1")))

    sources = _sources_sharing_one_record(every_other, 4)
    assert _outcomes(sources, NOW) == ["timed out", "1 sample", "timed out", "1 sample"]


# --- errors -------------------------------------------------------------------------------


def collect_error(handler: Handler, **spec: Any) -> str:
    with pytest.raises(SourceError) as err:
        source(handler, **spec).collect(NOW)
    return str(err.value)


def test_error_answer_names_the_url_the_status_and_prometheus_reason() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": parse error'}
    message = collect_error(answer(body, 400))
    assert message.startswith(f"{BASE}/api/v1/query: HTTP 400: query failed: bad_data: ")
    assert "parse error" in message


def test_error_answer_with_a_huge_reason_is_cut_to_200_characters() -> None:
    body = {"status": "error", "errorType": "execution", "error": "y" * 5000}
    message = collect_error(answer(body, 422))
    assert "y" * 200 in message and "y" * 201 not in message


def test_http_error_without_json_quotes_at_most_200_characters() -> None:
    message = collect_error(answer(b"<html>" + b"x" * 5000, 503))
    assert f"{BASE}/api/v1/query: HTTP 503, not JSON" in message
    assert "x" * 194 in message and "x" * 195 not in message


def test_http_error_with_a_success_body_still_fails() -> None:
    message = collect_error(answer(vector(({}, "1")), 500))
    assert "HTTP 500" in message


def test_timeout_names_the_url_and_the_limit() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    assert collect_error(handle, timeout_s=1.5) == f"{BASE}/api/v1/query: no complete answer within 1.5 s"


def test_connection_refused_names_the_url() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    message = collect_error(handle)
    assert message == f"{BASE}/api/v1/query: request failed: ConnectError: [Errno 111] Connection refused"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "(top)"),
        ({"data": {}}, "status"),
        ({"status": "ok"}, "status"),
        ({"status": "success"}, "data: missing"),
        ({"status": "success", "data": {"resultType": "vector", "result": {}}}, "data.result"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
         "data.result[0].value"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [NOW, 1]}]}},
         "data.result[0].value[1]"),
        ({"status": "success", "data": {"resultType": "matrix", "result": [{"values": [[NOW]]}]}},
         "data.result[0].values[0]"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{"value": [NOW, "abc"]}]}},
         "data.result[0].value: value 'abc' is not a number"),
        ({"status": "success", "data": {"resultType": "matrix", "result": [{"values": [[NOW, "1"], [NOW, "x"]]}]}},
         "data.result[0].values[1]: value 'x' is not a number"),
    ],
)
def test_malformed_answers_raise_source_error_naming_the_field(body: Any, field: str) -> None:
    message = collect_error(answer(body))
    assert message.startswith(f"{BASE}/api/v1/query: not a query API answer (")
    assert field in message


def test_a_string_result_is_an_error_naming_the_query_in_the_same_words_at_every_poll() -> None:
    """Prometheus stamps a string result with the evaluation time: quoting the answer made each
    poll's message new, so the engine (which says a source's problem once, until its words
    change) logged it at every collection."""
    def string_at_eval_time(request: httpx.Request) -> httpx.Response:
        at = float(request.url.params["time"])
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "string", "result": [at, "s"]}})

    src = source(string_at_eval_time, query='"s"')
    messages = []
    for now in (NOW, NOW + 5):
        with pytest.raises(SourceError) as err:
            src.collect(now)
        messages.append(str(err.value))
    assert messages == [f"""{BASE}/api/v1/query: query '"s"' gives a string, not a number"""] * 2


def test_non_json_success_body_is_a_source_error() -> None:
    assert "not JSON: 'hello'" in collect_error(answer(b"hello"))


def test_parse_query_response_reports_series_with_their_labels() -> None:
    body = json.loads(json.dumps(matrix(({"job": "a"}, [(1.0, "1"), (2.0, "+Inf")]))))
    assert parse_query_response(body) == [({"job": "a"}, [(1.0, 1.0)])]


def test_an_answer_longer_than_max_body_bytes_is_an_error_naming_the_limit_and_counts_as_answered() -> None:
    """A family query over a whole fleet is not held whole past ``max_body_bytes``; the server did
    answer, so it ends a run of unanswered queries: q0 and q2 time out on either side of it, and
    q3 is still asked (two unanswered in a row would have made it "not asked")."""
    asked: list[str] = []

    def huge_or_hung(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        if request.url.params["query"] == "q1":
            return httpx.Response(200, content=b"[" * (2 * 1024 * 1024))
        raise httpx.ReadTimeout("no answer", request=request)

    client = httpx.Client(transport=httpx.MockTransport(huge_or_hung))
    unanswered = Unanswered()
    sources = [PromQuerySource(f"s{i}", PromQuerySpec(url=BASE, query=f"q{i}", metric="m", max_body_bytes=1024 * 1024),
                               client, unanswered) for i in range(4)]
    errors = []
    for src in sources:
        with pytest.raises(SourceError) as err:
            src.collect(NOW)
        errors.append(str(err.value))
    assert "longer than 1,048,576 bytes (max_body_bytes)" in errors[1]
    assert asked == ["q0", "q1", "q2", "q3"]
    assert "no complete answer" in errors[3]
