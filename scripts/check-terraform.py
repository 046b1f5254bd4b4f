"""Parses terraform/ (python-hcl2) and asserts what the stack must have.

No provider can be downloaded here, so `terraform validate` cannot run; this
checks the shape a reviewer would look for first.
"""

import glob
import sys

import hcl2

class Block(dict):
    """A block whose attributes read plainly: some python-hcl2 versions wrap
    every attribute value in a one-item list."""

    def get(self, key, default=None):
        value = super().get(key, default)
        if isinstance(value, list) and len(value) == 1:
            return value[0]
        return value


blocks = {"module": {}, "resource": {}, "variable": {}, "output": {}, "terraform": []}
for path in sorted(glob.glob("terraform/*.tf")):
    with open(path) as f:
        doc = hcl2.load(f)
    for kind in ("module", "variable", "output"):
        for block in doc.get(kind, []):
            blocks[kind].update({name: Block(body) for name, body in block.items()})
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                blocks["resource"][f"{rtype}.{name}"] = Block(body)
    blocks["terraform"].extend(doc.get("terraform", []))

problems = []


def need(condition, message):
    if not condition:
        problems.append(message)


def text(value):
    return str(value).replace(" ", "")


modules = blocks["module"]
for name, source in [
    ("vpc", "terraform-aws-modules/vpc/aws"),
    ("eks", "terraform-aws-modules/eks/aws"),
    ("database", "terraform-aws-modules/rds/aws"),
    ("media", "terraform-aws-modules/s3-bucket/aws"),
]:
    need(modules.get(name, Block()).get("source") == source, f"module {name} from {source}")
    need("version" in modules.get(name, {}), f"module {name} has a version constraint")

eks = modules.get("eks", Block())
need("eks_managed_node_groups" in eks, "EKS has a managed node group")

db = modules.get("database", Block())
need(db.get("engine") == "postgres", "RDS runs PostgreSQL")
need(db.get("storage_encrypted") is True, "RDS storage is encrypted")
need(db.get("deletion_protection") is True, "RDS has deletion protection")
need(db.get("publicly_accessible") is False, "RDS is not public")
need("local.prod" in text(db.get("multi_az")), "RDS is Multi-AZ in prod")

media = modules.get("media", Block())
for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
    need(media.get(flag) is True, f"media bucket: {flag}")
need("enabled" in text(media.get("versioning")) and "True" in text(media.get("versioning")),
     "media bucket is versioned")
need("aws:kms" in text(media.get("server_side_encryption_configuration")), "media bucket is encrypted (KMS)")

resources = blocks["resource"]
for resource in [
    "aws_ecr_repository.image",
    "aws_secretsmanager_secret.node",
    "aws_kms_key.data",
    "aws_eks_pod_identity_association.node",
    "aws_sesv2_email_identity.mail",
    "aws_secretsmanager_secret.migrate",
    "helm_release.keda",
    "helm_release.cluster_autoscaler",
    "aws_eks_pod_identity_association.cluster_autoscaler",
    "kubernetes_namespace_v1.app",
    "kubernetes_role_v1.deploy",
    "aws_eks_access_entry.deploy",
]:
    need(resource in resources, f"resource {resource}")
need("var.api_public_cidrs" in text(eks.get("endpoint_public_access_cidrs")),
     "the EKS API is reachable from outside only from api_public_cidrs")
need(db.get("username") != "videoproject_app", "the nodes' role is not RDS's master user")
need(resources.get("aws_kms_key.data", Block()).get("enable_key_rotation") is True, "the KMS key rotates")

for name, body in blocks["variable"].items():
    need(body.get("description"), f"variable {name} has a description")
validated = [n for n, b in blocks["variable"].items() if "validation" in b]
need(len(validated) >= 5, f"variables are validated (only {validated})")
for name, body in blocks["output"].items():
    need(body.get("description"), f"output {name} has a description")

backend = [b for t in blocks["terraform"] for b in t.get("backend", [])]
need(any("s3" in b for b in backend), "state in an S3 backend")

if problems:
    print("terraform/ lacks:", *problems, sep="\n  ")
    sys.exit(1)
print(f"terraform ok: {len(modules)} modules, {len(resources)} resources, "
      f"{len(blocks['variable'])} variables ({len(validated)} validated), {len(blocks['output'])} outputs")
