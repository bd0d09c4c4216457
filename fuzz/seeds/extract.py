#!/usr/bin/env python3
"""Seeds for the fuzz corpora, from the repository's own examples: the configurations in the
README and the filter's tests, the example StickyCanary and the specs in tests, the plan files
of the tests, dashboard actions, and Prometheus answers in the API's documented shape.

Writes fuzz/seeds/<target>/<n>; `make fuzz-seed` (cargo fuzz cmin) merges them into
fuzz/corpus/<target>/, which is what is committed and replayed.
"""
import hashlib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent


def sources(*globs):
    for pattern in globs:
        for path in sorted(ROOT.glob(pattern)):
            if "/target/" not in str(path):
                yield path.read_text(errors="replace")


def raw_strings(text):
    """Rust raw strings r#"..."# and plain "..." literals without escapes beyond \\n and \\"."""
    for m in re.finditer(r'r#"(.*?)"#', text, re.S):
        yield m.group(1)
    for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text):
        yield m.group(1).replace('\\"', '"').replace("\\n", "\n")


def json_objects(text, must):
    """Balanced {...} spans containing `must`."""
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        depth = 0
        for i in range(start, min(len(text), start + 4000)):
            c = text[i]
            depth += c == "{"
            depth -= c == "}"
            if depth == 0:
                span = text[start : i + 1]
                if must in span and span.startswith('{"'):
                    yield span
                break


def write(target, items):
    directory = OUT / target
    directory.mkdir(parents=True, exist_ok=True)
    seen = set()
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen or len(data) > 8192:
            continue
        seen.add(digest)
        (directory / digest).write_bytes(data)
    print(f"{target}: {len(seen)} seeds")


texts = list(sources("README.md", "docs/*.md", "filter/src/*.rs", "filter/tests/*.rs",
                     "crates/*/src/**/*.rs", "e2e/src/**/*.rs", "e2e/tests/*.rs",
                     "tests/tests/*.rs", "bench/**/*.rs"))
literals = [s for t in texts for s in raw_strings(t)] + texts

configs = {o for t in literals for o in json_objects(t, '"versions"') if '{{' not in o}
rollouts = {o for t in literals for o in json_objects(t, '"rollouts"') if '{{' not in o}
write("filter_config", sorted(configs))
write("rollouts", sorted(rollouts | set(list(sorted(configs))[:20])))

# cookie: byte 0 and 1 pick names, byte 2 the length bound (see harness), then the header.
headers = {m.group(1) for t in texts
           for m in re.finditer(r'b"((?:[a-zA-Z0-9_.-]+=[^"]*;?[^"]*))"', t)}
headers |= {s for t in literals for s in [t] if re.fullmatch(r'[\w.-]+=[^\n]{0,200}', t) and ';' in t}
write("cookie", [bytes([i % 6, (i // 6) % 6, 64]) + h.encode() for i, h in enumerate(sorted(headers))])

# decide: structured input; a few byte strings, the rest is grown by the fuzzer.
write("decide", [bytes([k]) * n for k in (0, 1, 7, 0x55, 0xff) for n in (1, 16, 64)])

specs = [ROOT.joinpath("istio/examples/stickycanary.yaml").read_text()]
specs += [b for t in sources("README.md", "docs/*.md", "charts/**/*.yaml")
          for b in re.findall(r"```ya?ml\n(.*?)```", t, re.S) if "StickyCanary" in b or "versions:" in b]
specs += [o for t in literals for o in json_objects(t, '"service"') if '"versions"' in o and '{{' not in o]
specs += [
    "service: shop\nversions:\n  - {name: v1, weight: 100}\n",
    "service: shop.prod.svc.cluster.local\nversions:\n  - {name: v1, weight: 90}\n  - {name: v2, weight: 10}\n"
    "steps: [1, 5, 10, 50, 100]\nauto: {enabled: true, intervalSeconds: 60, gates: [50], promotion: Auto,"
    " rollback: Drain, onInconclusive: Rollback, webhook: 'https://hooks.example/x'}\n"
    "analysis: {provider: Istio, alpha: 0.05, minRequests: 100, maxErrorRate: 0.02, maxP99Ms: 500}\n",
    "service: shop\nversions:\n  - {name: v2, weight: 100}\n  - {name: v1, weight: 0, drain: true}\nretiring: v1\n",
    "service: shop\nversions: [{name: v1, weight: 50}, {name: v2, weight: 50}]\nfilter:\n  override: {token: s3cret}\n"
    "  cookie: {name: sv, idName: sid, domain: shop.example, sameSite: Strict}\n  repin: expiry\n"
    "  trustIncomingHeader: true\nplugin:\n  sidecars: [{namespace: prod, selector: {app: web}}]\n"
    "  selector: {istio: ingressgateway}\n  targetRefs: [{kind: Gateway, name: gw}]\n"
    "routing: {virtualService: shop, destinationRule: shop, versionLabel: track}\npaused: true\n",
    "apiVersion: stickycanary.io/v1alpha1\nkind: StickyCanary\nmetadata: {name: shop, namespace: prod}\n"
    "spec:\n  service: shop\n  versions: [{name: v1, weight: 95}, {name: v2, weight: 5}]\n  auto: {enabled: true}\n"
    "status: {phase: Progressing}\n",
]
write("spec_yaml", specs)

plans = [s for s in literals if re.search(r"^- (\{ ?)?project:", s, re.M)]
plans += [b for t in sources("README.md", "docs/*.md") for b in re.findall(r"```ya?ml\n(.*?)```", t, re.S)
          if "project:" in b]
write("plan_file", plans)

answers = [
    '{"status":"success","data":{"resultType":"vector","result":[]}}',
    '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"envoy_cluster_upstream_rq_total","pod":"a"},"value":[1700000000.123,"1234"]}]}}',
    '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"le":"+Inf","pod":"a"},"value":[1700000000,"10"]},{"metric":{"le":"5","pod":"a"},"value":[1700000000,"8"]},{"metric":{"le":"0.5","pod":"a"},"value":[1700000000,"2"]}]}}',
    '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"sticky_reason":"hash","sticky_version":"v2"},"value":[1700000000,"3"]},{"metric":{"sticky_reason":"cookie","le":"1","sticky_version":"v2"},"value":[1700000000,"9"]}]}}',
    '{"status":"success","data":{"resultType":"matrix","result":[]}}',
    '{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}',
    '{"status":"error","errorType":"timeout","error":"query timed out"}',
    '{"status":"success","data":{"activeTargets":[{"scrapeInterval":"15s"},{"scrapeInterval":"1m30s"},{"scrapeInterval":"500ms"}]}}',
    '{"status":"success","data":{"activeTargets":[]}}',
]
write("prometheus_answer", answers)

actions = [o for t in literals for o in json_objects(t, '"action"') if '"rollout"' in o]
for action in ["next", "pause", "resume", "auto-on", "auto-off", "promote", "promote-finish", "abort"]:
    actions.append('{"rollout":"prod/shop","action":"%s","generation":3}' % action)
actions += ['{"rollout":"shop","action":"set-weight","weight":10}',
            '{"rollout":"shop","action":"set-weight","weight":100.001}',
            '{"rollout":"shop","action":"set-weight"}']
write("dashboard_action", actions)
