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
