"""Holds the deployment files to the binary and to each other.

Usage: check-consistency.py ENV_NAMES RENDERED_DIR
  ENV_NAMES     the output of `videoproject env`: what the binary reads
  RENDERED_DIR  `kubectl kustomize` of each overlay, as <overlay>.yaml

Fails (exit 1, one line per problem) when
- a manifest, docker-compose.yml, the Dockerfile or Terraform's node secret
  sets an environment variable the binary does not read (a typo, or a
  setting that was renamed: it would be ignored without a word);
- a StatefulSet that an autoscaler (HorizontalPodAutoscaler or KEDA
  ScaledObject) owns sets `replicas` (every apply would reset it);
- an autoscaler targets something the overlay does not have;
- a KEDA PostgreSQL trigger's target (jobs per node) is not the VP_WORKERS
  its nodes run with;
- resources of one overlay sit in more than one namespace, or not in the
  namespace Terraform gives that environment's pod identity;
- the service account the pods run as is not the one Terraform gives a role;
- the keys of the node and migration secrets Terraform writes are not
  those of k8s/base/secret.template.yaml (which the pods read);
- the nodes do not connect as the role the migration Job grants rows to,
  KEDA not as the one it grants job counts to, or the Job does not migrate
  as RDS's master user (which nothing else may use);
- the media bucket's lifecycle rule does not cover the prefix the nodes
  write to (VP_MEDIA_URL's path, then the store's `videos/`);
- the release workflow pins an image name the manifests do not use;
- a node's way down (preStop, the HTTP drain, shutdown_grace_secs and a
  margin for the hand-back) does not fit terminationGracePeriodSeconds;
- a NetworkPolicy lets PostgreSQL be reached elsewhere than Terraform's
  VPC, or NetworkPolicies exist while Terraform leaves them unenforced;
- an object of an overlay lacks the app.kubernetes.io/name label the
  release applies by, or is of a kind Terraform's deploy Role cannot manage;
- a setting names a file (VP_CONFIG, a TLS file, a key file) that the pod
  neither mounts nor gets from the image (config/ → /etc/videoproject/).
"""

import glob
import re
import sys

import yaml

problems = []


def problem(message):
    problems.append(message)


def read_names(path):
    exact, families = set(), []
    with open(path) as f:
        for line in f:
            name = line.strip()
            if name.endswith("*"):
                families.append(name[:-1])
            elif name:
                exact.add(name)
    return exact, families


EXACT, FAMILIES = read_names(sys.argv[1])
RENDERED = sys.argv[2]


def read_by_binary(name):
    return name in EXACT or any(name.startswith(f) for f in FAMILIES)


def check_names(where, names, substituted=()):
    """`substituted`: names only used inside other values, as $(NAME)."""
    for name in sorted(set(names)):
        if name in substituted:
            continue
        if not read_by_binary(name):
            problem(f"{where}: sets {name}, which videoproject does not read (videoproject env)")


FILE_SETTINGS = re.compile(r"^VP_(CONFIG|.*_FILE|CLUSTER_TLS_(CERT|KEY|CA))$")


def check_files(where, container, values):
    mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])]
    for name, path in values.items():
        if not FILE_SETTINGS.match(name):
            continue
        mounted = any(path == m or path.startswith(m + "/") for m in mounts)
        in_image = path.startswith("/etc/videoproject/") and glob.glob("config/" + path.removeprefix("/etc/videoproject/"))
        if not (mounted or in_image):
            problem(f"{where}: {name}={path} is neither mounted nor in the image")


def container_env(where, container, config_maps, secrets, config_values=None):
    names = [e["name"] for e in container.get("env", [])]
    joined = " ".join(str(e.get("value", "")) for e in container.get("env", []))
    substituted = set(re.findall(r"\$\((\w+)\)", joined))
    values = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names += config_maps.get(source["configMapRef"]["name"], [])
            values.update((config_values or {}).get(source["configMapRef"]["name"], {}))
        if "secretRef" in source:
            names += secrets.get(source["secretRef"]["name"], [])
    check_names(where, names, substituted)
    check_files(where, container, values)


def pod_spec(doc):
    spec = doc.get("spec", {})
    return spec.get("template", {}).get("spec") or {}


TERRAFORM = "\n".join(open(p).read() for p in sorted(glob.glob("terraform/*.tf")))
with open("k8s/base/secret.template.yaml") as f:
    SECRET_TEMPLATES = {
        d["metadata"]["name"]: d.get("stringData", {}) for d in yaml.safe_load_all(f) if d
    }


def terraform_namespace(environment):
    """The namespace terraform/main.tf gives `environment`'s pod identity,
    by the rule it states (asserted here word for word)."""
    rule = 'namespace = local.prod ? "videoproject" : "videoproject-${var.environment}"'
    if rule not in re.sub(r"\s+", " ", TERRAFORM):
        problem("terraform/main.tf: local.namespace is not the rule this check knows: update both")
        return None
    if not glob.glob(f"terraform/environments/{environment}.tfvars"):
        return None
    return "videoproject" if environment == "prod" else f"videoproject-{environment}"


def terraform_service_account():
    """The service account of the nodes' pod identity (not the add-ons')."""
    found = re.search(r'resource "aws_eks_pod_identity_association" "node".*?service_account\s*=\s*"([^"]+)"', TERRAFORM, re.S)
    return found.group(1) if found else None


TERRAFORM_SERVICE_ACCOUNT = terraform_service_account()


HTTP_DRAIN_SECS = 10  # src/app.rs DRAIN
HAND_BACK_MARGIN_SECS = 5


def shutdown_grace_secs(overlay):
    """shutdown_grace_secs as the overlay's nodes run: the default, or the
    overlay's own settings file."""
    import tomllib

    with open("config/default.toml", "rb") as f:
        grace = tomllib.load(f)["tuning"]["shutdown_grace_secs"]
    for path in glob.glob(f"k8s/overlays/{overlay}/*.toml"):
        with open(path, "rb") as f:
            grace = tomllib.load(f).get("tuning", {}).get("shutdown_grace_secs", grace)
    return grace


def check_way_down(overlay, doc):
    pod = pod_spec(doc)
    period = pod.get("terminationGracePeriodSeconds", 30)
    pause = max(
        (c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0) for c in pod.get("containers", [])),
        default=0,
    )
    need = pause + HTTP_DRAIN_SECS + shutdown_grace_secs(overlay) + HAND_BACK_MARGIN_SECS
    if period < need:
        problem(f"overlay {overlay}: {doc['kind']}/{doc['metadata']['name']} gets {period} s to stop, its way down takes {need} s")
    if not pause:
        problem(f"overlay {overlay}: {doc['kind']}/{doc['metadata']['name']} has no preStop pause: it would refuse requests still routed to it")


def terraform_vpc_cidr():
    found = re.search(r'variable "vpc_cidr".*?default\s*=\s*"([^"]+)"', TERRAFORM, re.S)
    return found.group(1) if found else None


VPC_CIDR = terraform_vpc_cidr()
ENFORCED = re.search(r"enableNetworkPolicy\s*=\s*\"true\"", TERRAFORM) is not None


def check_network_policy(overlay, doc):
    name = f"overlay {overlay}: NetworkPolicy/{doc['metadata']['name']}"
    if not ENFORCED:
        problem(f"{name}: Terraform does not turn on the VPC CNI's enableNetworkPolicy, so it is ignored")
    for rule in doc["spec"].get("egress", []):
        if any(p.get("port") == 5432 for p in rule.get("ports", [])):
            cidrs = {t["ipBlock"]["cidr"] for t in rule.get("to", []) if "ipBlock" in t}
            if cidrs != {VPC_CIDR}:
                problem(f"{name}: PostgreSQL reached at {sorted(cidrs)}, Terraform's VPC is {VPC_CIDR}")


def plural(kind):
    """The resource name of a kind, as RBAC rules name it."""
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def deploy_role():
    """(api group, resource) pairs of Terraform's kubernetes_role_v1.deploy."""
    block = re.search(r'resource "kubernetes_role_v1" "deploy" \{(.*?)\n\}', TERRAFORM, re.S)
    pairs = set()
    for rule in re.findall(r"rule \{(.*?)\}", block.group(1) if block else "", re.S):
        groups = re.findall(r'"([^"]*)"', re.search(r"api_groups\s*=\s*\[(.*?)\]", rule, re.S).group(1))
        resources = re.findall(r'"([^"]*)"', re.search(r"resources\s*=\s*\[(.*?)\]", rule, re.S).group(1))
        pairs |= {(g, r) for g in groups for r in resources}
    if not pairs:
        problem('terraform: no kubernetes_role_v1 "deploy" with rules')
    return pairs


DEPLOY_ROLE = deploy_role()


def check_overlay(path):
    overlay = path.rsplit("/", 1)[-1].removesuffix(".yaml")
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    config_maps = {
        d["metadata"]["name"]: list(d.get("data", {}))
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    config_values = {
        d["metadata"]["name"]: {k: str(v) for k, v in d.get("data", {}).items()}
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    # the Secrets are made from the secret store; their keys are the template's
    secrets = {name: list(keys) for name, keys in SECRET_TEMPLATES.items()}
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    namespaces.discard(None)
    if len(namespaces) > 1:
        problem(f"overlay {overlay}: resources in several namespaces {sorted(namespaces)}")
    expected = terraform_namespace(overlay)
    if expected and namespaces != {expected}:
        problem(f"overlay {overlay}: namespace {sorted(namespaces)}, Terraform's pod identity for {overlay} is in {expected}")
    accounts = {
        pod_spec(d).get("serviceAccountName")
        for d in docs
        if d["kind"] == "StatefulSet"
    }
    for d in docs:
        if d["kind"] == "StatefulSet":
            check_way_down(overlay, d)
        if d["kind"] == "NetworkPolicy":
            check_network_policy(overlay, d)
    if accounts != {TERRAFORM_SERVICE_ACCOUNT}:
        problem(f"overlay {overlay}: the nodes run as {sorted(map(str, accounts))}, Terraform's pod identity is for {TERRAFORM_SERVICE_ACCOUNT}")
    workloads = {}
    for d in docs:
        spec = d.get("spec", {})
        pod = pod_spec(d)
        if pod:
            workloads[(d["kind"], d["metadata"]["name"])] = d
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                container_env(f"overlay {overlay}: {d['kind']}/{d['metadata']['name']}", c, config_maps, secrets, config_values)
    # the release applies what carries the name label, as Terraform's deploy
    # role, which may manage the kinds its Role lists and nothing else
    for d in docs:
        if d["kind"] == "Namespace":
            continue
        what = f"overlay {overlay}: {d['kind']}/{d['metadata']['name']}"
        if "app.kubernetes.io/name" not in (d["metadata"].get("labels") or {}):
            problem(f"{what} has no app.kubernetes.io/name label: the release would not apply it")
        group = d["apiVersion"].rsplit("/", 1)[0] if "/" in d["apiVersion"] else ""
        if (group, plural(d["kind"])) not in DEPLOY_ROLE:
            problem(f"{what}: Terraform's deploy Role cannot manage {plural(d['kind'])} in {group or 'the core group'}")
    for d in docs:
        if d["kind"] == "HorizontalPodAutoscaler":
            target = d["spec"]["scaleTargetRef"]
        elif d["kind"] == "ScaledObject":
            target = d["spec"]["scaleTargetRef"]
            target.setdefault("kind", "Deployment")
        else:
            continue
        if d["kind"] == "ScaledObject":
            workers = {
                v
                for doc in docs
                if doc["kind"] == "ConfigMap"
                for k, v in doc.get("data", {}).items()
                if k == "VP_WORKERS"
            }
            for trigger in d["spec"].get("triggers", []):
                if trigger["type"] == "postgresql":
                    per_node = trigger["metadata"].get("targetQueryValue")
                    if {per_node} != workers:
                        problem(f"overlay {overlay}: ScaledObject/{d['metadata']['name']} counts {per_node} jobs per node, the nodes run VP_WORKERS={sorted(workers)}")
        owned = workloads.get((target["kind"], target["name"]))
        if owned is None:
            problem(f"overlay {overlay}: {d['kind']}/{d['metadata']['name']} targets {target['kind']}/{target['name']}, which is not there")
        elif "replicas" in owned["spec"]:
            problem(f"overlay {overlay}: {target['kind']}/{target['name']} sets replicas, but {d['kind']}/{d['metadata']['name']} owns them")


for path in sorted(glob.glob(f"{RENDERED}/*.yaml")):
    check_overlay(path)

# docker compose: every service that runs the image
with open("docker-compose.yml") as f:
    compose = yaml.safe_load(f)
for name, service in compose.get("services", {}).items():
    if service.get("image", "").startswith("videoproject") or service.get("build"):
        env = service.get("environment", {})
        names = list(env) if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        check_names(f"docker-compose.yml: {name}", names)

# the Dockerfile's ENV lines (one or several NAME=value each)
with open("Dockerfile") as f:
    dockerfile = f.read().replace("\\\n", " ")
for line in dockerfile.splitlines():
    if line.startswith("ENV "):
        check_names("Dockerfile", re.findall(r"(\w+)=", line))

# Terraform: the keys of each secret it writes, which the pods read through
# the Secret whose keys the template shows
TERRAFORM_SECRETS = {"node": "videoproject-secrets", "migrate": "videoproject-migrate"}
for resource, secret in TERRAFORM_SECRETS.items():
    blocks = re.findall(
        rf'resource "aws_secretsmanager_secret_version" "{resource}".*?secret_string\s*=\s*jsonencode\(\{{(.*?)\}}\)',
        TERRAFORM,
        re.S,
    )
    if len(blocks) != 1:
        problem(f"terraform: no secret_string for aws_secretsmanager_secret_version.{resource}")
        continue
    keys = set(re.findall(r"^\s*(\w+)\s*=", blocks[0], re.M))
    check_names(f"terraform: {resource} secret", keys)
    template_keys = set(SECRET_TEMPLATES.get(secret, {}))
    if keys != template_keys:
        problem(f"terraform's {resource} secret has {sorted(keys)}, k8s/base/secret.template.yaml's {secret} {sorted(template_keys)}")

# the database roles: the nodes connect as the role the migration Job grants
# row access to, KEDA as the one it grants the job counts to, and the Job
# migrates as the owner (RDS's master user), which nothing else uses
def url_user(url):
    m = re.match(r"\s*postgres(?:ql)?://([^:@/]+)", url or "")
    return m.group(1) if m else None


# Terraform's urls by name: local.database_url.<name>
TERRAFORM_URLS = {
    name: url_user(url)
    for block in re.findall(r"database_url\s*=\s*\{(.*?)\n\s*\}", TERRAFORM, re.S)
    for name, url in re.findall(r'^\s*(\w+)\s*=\s*"(postgres[^"]*)"', block, re.M)
}


def terraform_secret_users(resource):
    """The user of each url in one of Terraform's secrets, written out or
    taken from local.database_url."""
    block = re.search(
        rf'resource "aws_secretsmanager_secret_version" "{resource}".*?jsonencode\(\{{(.*?)\}}\)', TERRAFORM, re.S
    )
    body = block.group(1) if block else ""
    users = {key: url_user(url) for key, url in re.findall(r'^\s*(\w+)\s*=\s*"(postgres[^"]*)"', body, re.M)}
    for key, name in re.findall(r"^\s*(\w+)\s*=\s*local\.database_url\.(\w+)\s*$", body, re.M):
        users[key] = TERRAFORM_URLS.get(name)
    return users


master = re.search(r'module "database".*?\busername\s*=\s*"(\w+)"', TERRAFORM, re.S)
for where, node, migrate, keda in [
    (
        "k8s/base/secret.template.yaml",
        {k: url_user(v) for k, v in SECRET_TEMPLATES.get("videoproject-secrets", {}).items()},
        {k: url_user(v) for k, v in SECRET_TEMPLATES.get("videoproject-migrate", {}).items()},
        None,
    ),
    (
        "terraform",
        terraform_secret_users("node"),
        terraform_secret_users("migrate"),
        terraform_secret_users("keda").get("connection"),
    ),
]:
    app, owner = migrate.get("VP_APP_DATABASE_URL"), migrate.get("DATABASE_URL")
    if not app or node.get("DATABASE_URL") != app or app == owner:
        problem(f"{where}: the nodes connect as {node.get('DATABASE_URL')!r}, the migration Job grants rows to {app!r} and migrates as {owner!r}")
    if keda is not None and keda != migrate.get("VP_MONITOR_DATABASE_URL"):
        problem(f"{where}: KEDA connects as {keda!r}, the migration Job grants job counts to {migrate.get('VP_MONITOR_DATABASE_URL')!r}")
    if where == "terraform" and (not master or master.group(1) != owner):
        problem(f"terraform: the Job migrates as {owner!r}, RDS's master user is {master.group(1) if master else None!r}")

# the bucket's retention rule and where the nodes write
media_url = re.search(r'VP_MEDIA_URL\s*=\s*"s3://\$\{[^}]+\}/([^"]*)"', TERRAFORM)
with open("src/storage.rs") as f:
    layout = re.search(r'format!\("(\w+)/\{id\}/source"\)', f.read())
rules = re.findall(r'filter\s*=\s*\{\s*prefix\s*=\s*"([^"]*)"', TERRAFORM)
if not (media_url and layout):
    problem("terraform's VP_MEDIA_URL or src/storage.rs's key layout: not found")
else:
    written = f"{media_url.group(1).strip('/')}/{layout.group(1)}/".lstrip("/")
    if written not in rules:
        problem(f"terraform: no lifecycle rule for {written!r}, where the nodes write (rules: {rules})")

# the image the release pins by digest is the one the manifests name
with open("k8s/base/kustomization.yaml") as f:
    base_images = {i["name"] for i in yaml.safe_load(f).get("images", [])}
with open(".github/workflows/release.yml") as f:
    pinned = set(re.findall(r"^\s*- name: (\S+)\s*$", f.read(), re.M))
if not pinned or not pinned <= base_images:
    problem(f"release.yml pins {sorted(pinned)}, the manifests' image is {sorted(base_images)}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"consistency ok: {len(EXACT)} variables the binary reads, {len(glob.glob(RENDERED + '/*.yaml'))} overlays")
