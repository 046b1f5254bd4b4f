# What the manifests need in the cluster besides the nodes: KEDA, which
# sizes the videoproject StatefulSet from the jobs queued and processing in
# PostgreSQL (k8s/base/scaledobject.yaml; its connection is a secret of its
# own, synced into the videoproject-keda Secret), and cert-manager, which
# issues the nodes' cluster certificates (k8s/overlays/prod/cluster-tls.yaml)
# and the ingress's.

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
    }
  }
}

resource "helm_release" "keda" {
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = "2.18.1"
  namespace        = "keda"
  create_namespace = true
  depends_on       = [module.eks]
}

resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = "v1.19.1"
  namespace        = "cert-manager"
  create_namespace = true
  set = [{
    name  = "crds.enabled"
    value = "true"
  }]
  depends_on = [module.eks]
}

resource "aws_secretsmanager_secret" "keda" {
  name                    = "${local.name}/keda"
  description             = "KEDA's connection to PostgreSQL; synced into the videoproject-keda Secret"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

# KEDA's image holds no RDS CA bundle: its queries are encrypted (require);
# its role may count jobs by state and read nothing else
resource "aws_secretsmanager_secret_version" "keda" {
  secret_id = aws_secretsmanager_secret.keda.id
  secret_string = jsonencode({
    connection = "postgresql://videoproject_keda:${urlencode(random_password.database_keda.result)}@${local.database_host}?sslmode=require"
  })
}

# ---- node autoscaling --------------------------------------------------------
# KEDA adds pods as the queue grows; the Cluster Autoscaler adds EC2 nodes
# when pods cannot be placed (up to node_count.max) and removes nodes that
# stay underused. It finds the managed node group by the tags EKS puts on
# its Auto Scaling group, and reaches AWS through Pod Identity.

resource "aws_iam_role" "cluster_autoscaler" {
  name               = "${local.name}-cluster-autoscaler"
  assume_role_policy = local.pod_identity_trust
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name = "scale-node-groups"
  role = aws_iam_role.cluster_autoscaler.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "Read"
        Effect = "Allow"
        Action = [
          "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
          "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
          "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
          "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
        ]
        Resource = "*"
      },
      {
        Sid      = "ReadThisClustersNodeGroups"
        Effect   = "Allow"
        Action   = ["eks:DescribeNodegroup"]
        Resource = "arn:aws:eks:${var.region}:${data.aws_caller_identity.current.account_id}:nodegroup/${module.eks.cluster_name}/*/*"
      },
      {
        Sid      = "ScaleThisClustersGroupsOnly"
        Effect   = "Allow"
        Action   = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
        Resource = "arn:aws:autoscaling:${var.region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/*"
        Condition = {
          StringEquals = { "aws:ResourceTag/k8s.io/cluster-autoscaler/${module.eks.cluster_name}" = "owned" }
        }
      },
    ]
  })
}

resource "aws_eks_pod_identity_association" "cluster_autoscaler" {
  cluster_name    = module.eks.cluster_name
  namespace       = "kube-system"
  service_account = "cluster-autoscaler"
  role_arn        = aws_iam_role.cluster_autoscaler.arn
}

resource "helm_release" "cluster_autoscaler" {
  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = "9.52.1"
  namespace  = "kube-system"
  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = module.eks.cluster_name }
    rbac          = { serviceAccount = { create = true, name = "cluster-autoscaler" } }
    extraArgs = {
      # the nodes' spool is an emptyDir: without this no node would go
      "skip-nodes-with-local-storage" = "false"
      "balance-similar-node-groups"   = "true"
      "expander"                      = "least-waste"
      # as slow to shrink as KEDA (k8s/base/scaledobject.yaml)
      "scale-down-unneeded-time" = "10m"
    }
  })]
  depends_on = [module.eks, aws_eks_pod_identity_association.cluster_autoscaler]
}
