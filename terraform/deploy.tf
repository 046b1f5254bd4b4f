# The release workflow's identity, narrowed: GitHub's OIDC token for one
# repository's environment becomes a role that may push this environment's
# image and find its cluster, and in the cluster may manage exactly the kinds
# the manifests hold, in the app's namespace only. The namespace itself is
# made here, so the release never touches anything cluster-wide.

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

# as k8s/base/namespace.yaml: the restricted Pod Security Standard, enforced
resource "kubernetes_namespace_v1" "app" {
  metadata {
    name = local.namespace
    labels = {
      "pod-security.kubernetes.io/enforce"         = "restricted"
      "pod-security.kubernetes.io/enforce-version" = "latest"
    }
  }
  depends_on = [module.eks]
}

locals {
  deploy      = var.github_repository != ""
  deploy_user = "${local.name}-deploy"
  # what the release does to the kinds it manages
  manage = ["get", "list", "watch", "create", "update", "patch", "delete"]
}

# made once per account, like the state bucket (docs/deploy.md)
data "aws_iam_openid_connect_provider" "github" {
  count = local.deploy ? 1 : 0
  url   = "https://token.actions.githubusercontent.com"
}

resource "aws_iam_role" "deploy" {
  count = local.deploy ? 1 : 0
  name  = local.deploy_user
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = data.aws_iam_openid_connect_provider.github[0].arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = "repo:${var.github_repository}:environment:${var.github_environment}"
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "deploy" {
  count = local.deploy ? 1 : 0
  name  = "release"
  role  = aws_iam_role.deploy[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RegistryLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"]
        Resource = "*"
      },
      {
        Sid    = "PushThisImage"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
          "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
        ]
        Resource = aws_ecr_repository.image.arn
      },
      {
        Sid      = "FindTheCluster"
        Effect   = "Allow"
        Action   = ["eks:DescribeCluster"]
        Resource = module.eks.cluster_arn
      },
    ]
  })
}

# in Kubernetes: a group, bound in the app's namespace to the role below
resource "aws_eks_access_entry" "deploy" {
  count             = local.deploy ? 1 : 0
  cluster_name      = module.eks.cluster_name
  principal_arn     = aws_iam_role.deploy[0].arn
  kubernetes_groups = [local.deploy_user]
}

# every kind the rendered overlays hold but the Namespace
# (scripts/check-consistency.py holds this list to them), and what
# `rollout status` and the migration's logs read
resource "kubernetes_role_v1" "deploy" {
  metadata {
    name      = "videoproject-deploy"
    namespace = kubernetes_namespace_v1.app.metadata[0].name
  }
  rule {
    api_groups = [""]
    resources  = ["configmaps", "serviceaccounts", "services"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["apps"]
    resources  = ["statefulsets"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["policy"]
    resources  = ["poddisruptionbudgets"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["ingresses", "networkpolicies"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["keda.sh"]
    resources  = ["scaledobjects", "triggerauthentications"]
    verbs      = local.manage
  }
  rule {
    api_groups = ["cert-manager.io"]
    resources  = ["certificates", "issuers"]
    verbs      = local.manage
  }
  rule {
    api_groups = [""]
    resources  = ["pods", "pods/log"]
    verbs      = ["get", "list", "watch"]
  }
}

resource "kubernetes_role_binding_v1" "deploy" {
  metadata {
    name      = "videoproject-deploy"
    namespace = kubernetes_namespace_v1.app.metadata[0].name
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.deploy.metadata[0].name
  }
  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Group"
    name      = local.deploy_user
  }
}
