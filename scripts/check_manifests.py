"""Checks the deployable manifests offline: the Helm chart (strict lint, render, schema
validation), the kustomize environments, the Argo CD health check (its Lua run on sample
objects) and that argocd-cm-health.yaml embeds health.lua. Run by scripts/check-manifests.sh."""
import json
import pathlib
import re
import subprocess
import sys

import helm_python
import lupa
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent
KUBE_VERSION = "1.33"
failures = []


def validate(name, documents):
    """kubernetes-validate --strict on a multi-document YAML string (custom kinds only warn)."""
    result = subprocess.run(
        [VENV_BIN / "kubernetes-validate", "--strict", "-k", KUBE_VERSION, "-"],
        input=documents, capture_output=True, text=True,
    )
    if result.returncode != 0:
        failures.append(f"{name}: {result.stdout}{result.stderr}")
    print(f"validated {name}")


chart = ROOT / "charts" / "multicomms-operator"
values = {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/x"}}}
lint = helm_python.lint(str(chart), values, strict=True)
if lint.get("errors"):
    failures.append(f"helm lint: {lint}")
rendered = helm_python.Chart.load(str(chart)).render(values, name="multicomms", namespace="multicomms-dev", is_install=True)
validate("chart", "\n---\n".join(rendered.values()))
deployments = {d["metadata"]["name"]: d for d in yaml.safe_load_all("\n---\n".join(rendered.values())) if d and d["kind"] == "Deployment"}
args = deployments["multicomms-multicomms-operator"]["spec"]["template"]["spec"]["containers"][0]["args"]
if args != ["run"]:
    failures.append(f"chart: the container must run `multicomms-operator run`, got {args}")
router = deployments["multicomms-multicomms-router"]["spec"]["template"]["spec"]
router_env = {e["name"]: e.get("value") for e in router["containers"][0]["env"]}
if router_env.get("MULTICOMMS_ENV") != "dev" or router_env.get("MULTICOMMS_PREFIX") != "ai-multi-comms":
    failures.append(f"chart: the router must name resources like the operator, got {router_env}")
if router["terminationGracePeriodSeconds"] * 1000 <= int(router_env["MULTICOMMS_REQUEST_TIMEOUT_MS"]):
    failures.append("chart: the router's grace period must outlast a request timeout (in-flight requests finish)")
# The router holds up to MULTICOMMS_MAX_CONNECTIONS clients; measured, 10,000 clients with a
# small request each in flight peaked at 549-568 MiB (about 55 KiB a client over a 25 MiB
# start; docs/benchmarks.md). The bodies they send are held within MULTICOMMS_BODY_BUDGET_BYTES
# (beyond it: 503 before a body is read), whatever each may send: a memory limit below the sum
# kills the pod at the load it was told to accept (review r3, M3).
limit = router["containers"][0]["resources"]["limits"]["memory"]
limit_mib = int(limit[:-2]) * {"Mi": 1, "Gi": 1024}[limit[-2:]]
clients_mib = int(router_env["MULTICOMMS_MAX_CONNECTIONS"]) * 55 / 1024
bodies_mib = int(router_env["MULTICOMMS_BODY_BUDGET_BYTES"]) / (1024 * 1024)
needed_mib = 32 + clients_mib + bodies_mib
if limit_mib < needed_mib:
    failures.append(
        f"chart: the router's memory limit {limit} cannot hold its maxConnections clients and its body budget "
        f"(needs {needed_mib:.0f}Mi: {clients_mib:.0f} for clients, {bodies_mib:.0f} for bodies)"
    )
# The processors are the operator's (a Deployment per Channel flow), not the chart's.
if any("processor" in name for name in deployments):
    failures.append(f"chart: renders processor Deployments the operator owns: {sorted(deployments)}")
operator_env = {e["name"]: e.get("value") for e in deployments["multicomms-multicomms-operator"]["spec"]["template"]["spec"]["containers"][0]["env"]}
if not (operator_env.get("MULTICOMMS_WORKER_IMAGE") or "").startswith("ghcr.io/multicomms/multicomms-runtime:"):
    failures.append(f"chart: the operator must be told the workers' image, got {operator_env}")
# Measured at 10,000 Companies: glibc's per-thread arenas held 5 MiB the operator had freed.
if operator_env.get("MALLOC_ARENA_MAX") != "1":
    failures.append("chart: the operator runs with one malloc arena (MALLOC_ARENA_MAX=1; docs/benchmarks.md)")
# Every binary the chart (and the operator, for the workers) runs is built into its image by the
# Dockerfile. No container engine runs here: this checks the Dockerfile's text, not a build.
dockerfile = (ROOT / "Dockerfile").read_text()
stages = {m.group(1): m.start() for m in re.finditer(r"^FROM \S+ AS (\S+)$", dockerfile, re.M)}
def stage_text(name):
    start = stages[name]
    later = [p for p in stages.values() if p > start]
    return dockerfile[start:min(later) if later else len(dockerfile)]
chart_values = yaml.safe_load((chart / "values.yaml").read_text())
wanted = {
    ("operator", "multicomms-operator"): chart_values["image"]["repository"],
    ("runtime", "multicomms-router"): chart_values["router"]["image"]["repository"],
    ("runtime", "multicomms-processor"): chart_values["processors"]["image"]["repository"],
}
for (stage, binary), repository in wanted.items():
    if not repository.endswith("/multicomms-" + stage) or stage not in stages:
        failures.append(f"Dockerfile: no `{stage}` stage for the chart's image {repository}")
    elif f"/usr/local/bin/{binary}" not in stage_text(stage) or f"--bin {binary}" not in dockerfile:
        failures.append(f"Dockerfile: the {stage} image does not build and carry {binary}")
if router_args := deployments["multicomms-multicomms-router"]["spec"]["template"]["spec"]["containers"][0].get("args"):
    if router_args != ["multicomms-router"]:
        failures.append(f"chart: the router container must run multicomms-router, got {router_args}")
# The images copy what the builder built: the folder under target/ is the profile of its build,
# and the dependency layer is cooked in that profile (or the build starts over without it).
built = re.search(r"^RUN cargo build --profile (\S+) --locked \\\n\s+-p multicomms-operator", dockerfile, re.M)
cooked = re.search(r"^RUN cargo chef cook --profile (\S+) ", dockerfile, re.M)
copied = set(re.findall(r"^COPY --from=builder /src/target/([^/]+)/multicomms-", dockerfile, re.M))
if not built or not cooked or cooked.group(1) != built.group(1) or copied != {built.group(1)}:
    failures.append("Dockerfile: the images must copy from the profile the builder cooks and builds "
                    f"(built {built and built.group(1)}, cooked {cooked and cooked.group(1)}, copied {sorted(copied)})")
print(f"Dockerfile: {len(wanted)} binaries in their images, built in the `{built and built.group(1)}` profile")
# Every base image pulled from a registry is pinned by digest (review r3, L9).
for image in re.findall(r"^FROM (\S+)", dockerfile, re.M):
    if image not in stages and "@sha256:" not in image:
        failures.append(f"Dockerfile: {image} is not pinned by digest")
# With the Prometheus Operator objects on, the PrometheusRule carries exactly files/alerts.yaml.
monitored = {"monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
rendered_monitoring = helm_python.Chart.load(str(chart)).render(
    {**values, **monitored}, name="multicomms", namespace="multicomms-dev", is_install=True)
objects = [d for d in yaml.safe_load_all("\n---\n".join(rendered_monitoring.values())) if d]
rules = [d for d in objects if d["kind"] == "PrometheusRule"]
alerts = yaml.safe_load((chart / "files" / "alerts.yaml").read_text())
if len(rules) != 1 or rules[0]["spec"] != alerts:
    failures.append("chart: the PrometheusRule must carry files/alerts.yaml unchanged")
if not {"ServiceMonitor", "PodMonitor"} <= {d["kind"] for d in objects}:
    failures.append("chart: monitoring.serviceMonitor.enabled renders no ServiceMonitor/PodMonitor")
# The alert rules' own tests (promtool from Debian's prometheus package; .ci/run installs it).
for args in (["check", "rules", "alerts.yaml"], ["test", "rules", "alerts_test.yaml"]):
    result = subprocess.run(["promtool", *args], cwd=chart / "files", capture_output=True, text=True)
    if result.returncode != 0:
        failures.append(f"promtool {' '.join(args)}: {result.stdout}{result.stderr}")
print("alert rules: promtool check + test")
# The IAM policies, rendered for this release: valid JSON, no placeholder left.
maps = [d for d in yaml.safe_load_all("\n---\n".join(rendered.values())) if d and d["kind"] == "ConfigMap"]
policies = next((m["data"] for m in maps if m["metadata"]["name"].endswith("-iam-policies")), {})
if sorted(policies) != ["client-events.json", "operator.json", "processor.json", "reply-processor.json", "router.json"]:
    failures.append(f"chart: the IAM policies ConfigMap holds {sorted(policies)}")
for name, text in policies.items():
    document = json.loads(text)
    if "${" in text or "ai-multi-comms-" not in text or "-dev" not in text:
        failures.append(f"chart: {name} is not scoped to the release's prefix and environment: {text[:200]}")
    if document.get("Version") != "2012-10-17":
        failures.append(f"chart: {name} is not an IAM policy document")
print(f"IAM policies: {len(policies)} rendered")
validate("chart CRDs", "".join(p.read_text() for p in sorted((chart / "crds").glob("*.yaml"))))

for env in ("dev", "prod"):
    built = subprocess.run(
        [VENV_BIN / "kubectl", "kustomize", str(ROOT / "config" / "environments" / env)],
        capture_output=True, text=True,
    )
    if built.returncode != 0:
        failures.append(f"kustomize {env}: {built.stderr}")
        continue
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = sorted(d["kind"] for d in documents)
    waves = {d["kind"]: d["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave") for d in documents}
    if (waves.get("Channel"), waves.get("Company")) != ("1", "2"):
        failures.append(f"kustomize {env}: sync waves must put Channels (1) before Companies (2), got {waves}")
    if kinds.count("Company") < 1 or kinds.count("Channel") != 3:
        failures.append(f"kustomize {env}: unexpected kinds {kinds}")
    validate(f"environment {env}", built.stdout)

# The kind job's manifests and the workflow itself.
validate("kind emulators", (ROOT / "tests" / "cluster" / "emulators.yaml").read_text())
kind_values = yaml.safe_load((ROOT / "tests" / "cluster" / "values-kind.yaml").read_text())
rendered_kind = helm_python.Chart.load(str(chart)).render(kind_values, name="multicomms", namespace="multicomms-dev", is_install=True)
validate("chart with the kind values", "\n---\n".join(rendered_kind.values()))
workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
runs = " ".join(str(step.get("run", "")) for job in workflow["jobs"].values() for step in job["steps"])
for needed in (".ci/run", "scripts/test-kind.sh"):
    if needed not in runs:
        failures.append(f".github/workflows/ci.yml does not run {needed}")
if "scripts/test-cluster.sh" not in (ROOT / ".ci" / "run").read_text():
    failures.append(".ci/run does not run the cluster suite (scripts/test-cluster.sh)")
if sorted(workflow[True]["push"]["branches"]) != ["develop", "main"]:
    failures.append(".github/workflows/ci.yml must build images on pushes to develop and main")
# Actions run with the job's token (packages: write on pushes): each is pinned to a commit, not
# to a tag its owner can move (review r3, L9).
for job in workflow["jobs"].values():
    for step in job["steps"]:
        uses = step.get("uses")
        if uses and not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses):
            failures.append(f".github/workflows/ci.yml: {uses} is not pinned to a commit SHA")
print("workflow: checks, images, kind")

argocd = ROOT / "config" / "argocd"
# The ApplicationSet's two Applications, rendered the way its list generator and go template do.
appset = yaml.safe_load((argocd / "applicationset.yaml").read_text())
template = yaml.safe_dump(appset["spec"]["template"])
expected = {"dev": "develop", "prod": "main"}
for element in appset["spec"]["generators"][0]["list"]["elements"]:
    app = yaml.safe_load(re.sub(r"\{\{\.(\w+)\}\}", lambda m: element[m.group(1)], template))
    env = element["env"]
    revisions = {s["targetRevision"] for s in app["spec"]["sources"]}
    paths = sorted(s["path"] for s in app["spec"]["sources"])
    ok = (
        app["metadata"]["name"] == f"multicomms-{env}"
        and revisions == {expected.get(env)}
        and paths == ["charts/multicomms-operator", f"config/environments/{env}"]
        and app["spec"]["destination"]["namespace"] == f"multicomms-{env}"
        and app["spec"]["sources"][0]["helm"]["valueFiles"] == [f"$values/config/environments/{env}/values.yaml"]
        and app["spec"]["sources"][1].get("ref") == "values"
        and yaml.safe_load((ROOT / "config" / "environments" / env / "values.yaml").read_text())["environment"] == env
    )
    if not ok:
        failures.append(f"applicationset: the {env} Application targets {revisions} {paths}: {app['spec']}")
if sorted(e["env"] for e in appset["spec"]["generators"][0]["list"]["elements"]) != ["dev", "prod"]:
    failures.append("applicationset: expected exactly the dev and prod Applications")
print("applicationset: develop → dev, main → prod")

# Every image a release pulls is one the repository host's CI pushes (review r3 and issue 26: the
# chart pulled :0.1.0, which nothing pushed): per branch, the commit SHA and the branch name,
# and from main the chart's appVersion too.
chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text())
images_job = workflow["jobs"]["images"]
pushed_tags = " ".join(str(step.get("with", {}).get("tags", "")) for step in images_job["steps"])
app_version_step = " ".join(str(step.get("run", "")) for step in images_job["steps"] if step.get("id") == "chart")


def pushed(branch, tag):
    if tag == branch:
        return ":${{ github.ref_name }}" in pushed_tags
    if re.fullmatch(r"[0-9a-f]{40}", tag):
        return ":${{ github.sha }}" in pushed_tags
    return (branch == "main" and tag == chart_meta["appVersion"] and "/^appVersion:/" in app_version_step
            and "github.ref_name == 'main'" in pushed_tags and "steps.chart.outputs.app_version" in pushed_tags)


def pulled_images(release_values):
    docs = helm_python.Chart.load(str(chart)).render(release_values, name="multicomms", namespace="multicomms-x", is_install=True)
    images = []
    for doc in yaml.safe_load_all("\n---\n".join(docs.values())):
        if doc and doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                images.append(container["image"])
                images.extend(e["value"] for e in container.get("env", []) if e["name"] == "MULTICOMMS_WORKER_IMAGE")
    return images


for branch, release_values in [("main", {})] + [
    (expected[env], yaml.safe_load((ROOT / "config" / "environments" / env / "values.yaml").read_text()))
    for env in ("dev", "prod")
]:
    for image in pulled_images(release_values):
        repository, tag = image.rsplit(":", 1)
        if not repository.startswith("ghcr.io/multicomms/multicomms-") or not pushed(branch, tag):
            failures.append(f"images: {image} (pulled from the {branch} branch's values) is not a tag CI pushes")
print("images: every tag the chart pulls is pushed by CI")

# Twilio reaches each environment's router: an Ingress on the host of its publicBaseUrl routes
# the webhooks' path to the router Service's API port (issue 26: replies were off everywhere).
for env in ("dev", "prod"):
    env_values = yaml.safe_load((ROOT / "config" / "environments" / env / "values.yaml").read_text())
    docs = helm_python.Chart.load(str(chart)).render(env_values, name="multicomms", namespace=f"multicomms-{env}", is_install=True)
    objects = [d for d in yaml.safe_load_all("\n---\n".join(docs.values())) if d]
    base = env_values.get("router", {}).get("publicBaseUrl", "")
    host = re.sub(r"^https://([^/]+)/?$", r"\1", base)
    router_env = {e["name"]: e.get("value") for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-router")
                  for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    routes = [
        (rule.get("host"), path["path"], path["backend"]["service"])
        for d in objects if d["kind"] == "Ingress"
        for rule in d["spec"]["rules"] for path in rule["http"]["paths"]
    ]
    operator_env = {e["name"]: e.get("value") for d in objects if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
                    for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    # Every path callers outside the cluster use: clients, Twilio (messages and status
    # callbacks), SendGrid's Event Webhooks, agents (the conversations API, the inbox).
    public = ["/initiate-conversation", "/recipients/whatsapp/x", "/webhooks/twilio/whatsapp", "/webhooks/twilio/status",
              "/webhooks/sendgrid/events/c/p", "/companies/c/projects/p/conversations", "/inbox"]
    unreachable = [want for want in public if not any(
        h == host and want.startswith(p) and svc["name"].endswith("-router") and svc["port"] == {"name": "http"}
        for h, p, svc in routes)]
    if not base.startswith("https://") or router_env.get("MULTICOMMS_PUBLIC_BASE_URL") != base or unreachable:
        failures.append(f"{env}: the router cannot be reached at {unreachable} (publicBaseUrl {base!r}, routes {routes})")
    if operator_env.get("MULTICOMMS_WORKER_PUBLIC_BASE_URL") != base:
        failures.append(f"{env}: the processors are not told the public URL for Twilio's status callbacks")
    validate(f"chart with the {env} values", "\n---\n".join(docs.values()))
print("webhooks: each environment's publicBaseUrl is routed to its router for every public path, and given to the processors")
validate("argocd ConfigMap", (argocd / "argocd-cm-health.yaml").read_text())
lua_source = (argocd / "health.lua").read_text()
config_map = yaml.safe_load((argocd / "argocd-cm-health.yaml").read_text())
for kind in ("Company", "Channel"):
    if config_map["data"][f"resource.customizations.health.multicomms.io_{kind}"].strip() != lua_source.strip():
        failures.append(f"argocd-cm-health.yaml: the {kind} check differs from health.lua")

lua = lupa.LuaRuntime(unpack_returned_tuples=True)
health = lua.eval("function(obj) " + lua_source + " end")


def health_of(obj):
    return dict(health(lua.table_from(obj, recursive=True)))


ready = lambda status, reason: {"type": "Ready", "status": status, "reason": reason, "message": "m"}
cases = [
    ({"metadata": {"generation": 1}}, "Progressing"),
    ({"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "conditions": [ready("True", "Synced")]}}, "Progressing"),
    ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [ready("True", "Synced")]}}, "Healthy"),
    ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [ready("False", "SecretNotFound")]}}, "Degraded"),
    ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [ready("False", "AwsError")]}}, "Progressing"),
    ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        ready("True", "Synced"), {"type": "WorkersReady", "status": "False", "reason": "RollingOut", "message": "m"}]}}, "Progressing"),
    ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        ready("True", "Synced"), {"type": "WorkersReady", "status": "True", "reason": "Ready", "message": "m"}]}}, "Healthy"),
]
for obj, expected in cases:
    got = health_of(obj)
    if got["status"] != expected:
        failures.append(f"health.lua: {obj} gave {got}, expected {expected}")
print(f"health.lua: {len(cases)} cases")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print("manifests OK")
