# The Video Project on AWS: a VPC, EKS with a managed node group, PostgreSQL
# on RDS, an S3 bucket for media, the nodes' secrets in Secrets Manager,
# SES for the emails and an ECR repository for the image.

data "aws_caller_identity" "current" {}

locals {
  name = "videoproject-${var.environment}"
  prod = var.environment == "prod"
  # the Kubernetes namespace of the environment's overlay (k8s/overlays/*):
  # prod's is `videoproject`, another's `videoproject-<environment>`
  namespace = local.prod ? "videoproject" : "videoproject-${var.environment}"
  # the sender of every email: an address of the domain SES verifies
  mail_from = "videoproject@${var.mail_from_domain}"
  # three zones, named: the subnets must not move when AWS adds a zone
  azs = ["${var.region}a", "${var.region}b", "${var.region}c"]
}

# ---- network ---------------------------------------------------------------

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.0"

  name = local.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets   = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  database_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 52 + i)]

  create_database_subnet_group = true
  enable_nat_gateway           = true
  # one NAT gateway is enough for dev; prod gets one per zone
  single_nat_gateway = !local.prod

  enable_flow_log                      = true
  create_flow_log_cloudwatch_log_group = true
  create_flow_log_cloudwatch_iam_role  = true

  public_subnet_tags  = { "kubernetes.io/role/elb" = 1 }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = 1 }
}

# ---- encryption key for everything stored ----------------------------------

resource "aws_kms_key" "data" {
  description             = "${local.name}: database, media, secrets and images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.data.key_id
}

# ---- Kubernetes ------------------------------------------------------------

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = local.name
  kubernetes_version = var.kubernetes_version
  vpc_id             = module.vpc.vpc_id
  subnet_ids         = module.vpc.private_subnets

  # the API from inside the VPC, and from outside only from the operators'
  # networks (none: no public endpoint at all)
  endpoint_private_access                  = true
  endpoint_public_access                   = length(var.api_public_cidrs) > 0
  endpoint_public_access_cidrs             = var.api_public_cidrs
  enable_cluster_creator_admin_permissions = true

  create_kms_key = false
  encryption_config = {
    provider_key_arn = aws_kms_key.data.arn
    resources        = ["secrets"]
  }

  addons = {
    coredns    = {}
    kube-proxy = {}
    # enforce NetworkPolicies (k8s/base/networkpolicy.yaml): without the
    # agent they are accepted and ignored
    vpc-cni = {
      before_compute       = true
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
    eks-pod-identity-agent = { before_compute = true }
    aws-ebs-csi-driver     = {}
  }

  eks_managed_node_groups = {
    workers = {
      instance_types = var.node_instance_types
      min_size       = var.node_count.min
      desired_size   = var.node_count.desired
      max_size       = var.node_count.max
      # IMDSv2 only, one hop: pods cannot borrow the node's role
      metadata_options = {
        http_endpoint               = "enabled"
        http_tokens                 = "required"
        http_put_response_hop_limit = 1
      }
    }
  }

  access_entries = {
    for i, arn in var.admin_role_arns : "admin-${i}" => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }
}

# ---- PostgreSQL ------------------------------------------------------------

resource "aws_security_group" "database" {
  name        = "${local.name}-database"
  description = "PostgreSQL, reachable from the EKS nodes only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "PostgreSQL from the cluster's nodes"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }
}

# Three roles: the master (the schema's owner) is used only by the migration
# Job, which makes the other two logins with these passwords and their
# access: the nodes' (rows, no DDL) and KEDA's (the jobs' states only).
resource "random_password" "database" {
  length  = 40
  special = false
}

resource "random_password" "database_app" {
  length  = 40
  special = false
}

resource "random_password" "database_keda" {
  length  = 40
  special = false
}

locals {
  database_host = "${module.database.db_instance_address}:5432/videoproject"
  # TLS checked against RDS's CA bundle, which the image carries
  database_tls = "sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"
  database_url = {
    owner = "postgres://videoproject_admin:${random_password.database.result}@${local.database_host}?${local.database_tls}"
    app   = "postgres://videoproject_app:${random_password.database_app.result}@${local.database_host}?${local.database_tls}"
    keda  = "postgres://videoproject_keda:${random_password.database_keda.result}@${local.database_host}?${local.database_tls}"
  }
}

module "database" {
  source  = "terraform-aws-modules/rds/aws"
  version = "~> 6.10"

  identifier           = local.name
  engine               = "postgres"
  engine_version       = "16"
  family               = "postgres16"
  major_engine_version = "16"
  instance_class       = var.db_instance_class

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_allocated_storage_gb * 10
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.data.arn

  db_name = "videoproject"
  # the schema's owner, for the migration Job only (its secret, below); the
  # password is ours rather than one RDS rotates behind the Job's back
  username                    = "videoproject_admin"
  manage_master_user_password = false
  password                    = random_password.database.result
  port                        = 5432

  multi_az               = local.prod
  publicly_accessible    = false
  deletion_protection    = true
  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.database.id]

  backup_retention_period             = local.prod ? 30 : 7
  copy_tags_to_snapshot               = true
  skip_final_snapshot                 = false
  final_snapshot_identifier_prefix    = "${local.name}-final"
  auto_minor_version_upgrade          = true
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.data.arn
  monitoring_interval                 = 60
  create_monitoring_role              = true
  monitoring_role_name                = "${local.name}-rds-monitoring"
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  parameters = [
    { name = "rds.force_ssl", value = "1" },
  ]
}

# ---- media -----------------------------------------------------------------

module "media" {
  source  = "terraform-aws-modules/s3-bucket/aws"
  version = "~> 5.0"

  bucket_prefix = "${local.name}-media-"

  block_public_acls        = true
  block_public_policy      = true
  ignore_public_acls       = true
  restrict_public_buckets  = true
  control_object_ownership = true
  object_ownership         = "BucketOwnerEnforced"

  attach_deny_insecure_transport_policy = true

  versioning = { enabled = true }

  server_side_encryption_configuration = {
    rule = {
      bucket_key_enabled = true
      apply_server_side_encryption_by_default = {
        sse_algorithm     = "aws:kms"
        kms_master_key_id = aws_kms_key.data.arn
      }
    }
  }

  # the nodes keep every object under <VP_MEDIA_URL's path>/videos/ (the
  # node secret below: s3://bucket/media); scripts/check-consistency.py holds
  # this prefix to it. A deleted object's old versions go a week later.
  lifecycle_rule = [{
    id                                     = "retention"
    enabled                                = true
    filter                                 = { prefix = "media/videos/" }
    expiration                             = { days = var.media_retention_days, expired_object_delete_marker = false }
    noncurrent_version_expiration          = { noncurrent_days = 7 }
    abort_incomplete_multipart_upload_days = 1
  }]
}

# Roles that pods take through EKS Pod Identity (no keys): the nodes', the
# Cluster Autoscaler's (addons.tf).
locals {
  pod_identity_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "pods.eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
}

# The nodes reach the bucket with EKS Pod Identity: the `videoproject`
# service account gets this role, no keys.
resource "aws_iam_role" "node" {
  name               = "${local.name}-node"
  assume_role_policy = local.pod_identity_trust
}

resource "aws_iam_role_policy" "node_media" {
  name = "media"
  role = aws_iam_role.node.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Objects"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        Resource = "${module.media.s3_bucket_arn}/*"
      },
      {
        Sid      = "List"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = module.media.s3_bucket_arn
      },
      {
        Sid      = "Key"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.data.arn
      },
    ]
  })
}

resource "aws_eks_pod_identity_association" "node" {
  cluster_name    = module.eks.cluster_name
  namespace       = local.namespace
  service_account = "videoproject"
  role_arn        = aws_iam_role.node.arn
}

# ---- email -----------------------------------------------------------------

resource "aws_sesv2_email_identity" "mail" {
  email_identity = var.mail_from_domain
}

# SES takes SMTP only with an IAM user's derived password; this user can
# send mail from the verified domain and nothing else.
resource "aws_iam_user" "smtp" {
  name = "${local.name}-smtp"
}

resource "aws_iam_user_policy" "smtp" {
  name = "send-mail"
  user = aws_iam_user.smtp.name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["ses:SendRawEmail"]
      Resource = aws_sesv2_email_identity.mail.arn
    }]
  })
}

resource "aws_iam_access_key" "smtp" {
  user = aws_iam_user.smtp.name
}

# ---- the nodes' secrets ----------------------------------------------------

resource "random_password" "cluster_cookie" {
  length  = 48
  special = false
}

# the biscuit root key: 32 random bytes, hex (VP_TOKEN_KEY)
resource "random_id" "token_key" {
  byte_length = 32
}

resource "aws_secretsmanager_secret" "node" {
  name                    = "${local.name}/node"
  description             = "The videoproject nodes' secret settings; synced into the videoproject-secrets Secret"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "node" {
  secret_id = aws_secretsmanager_secret.node.id
  secret_string = jsonencode({
    DATABASE_URL      = local.database_url.app
    VP_CLUSTER_COOKIE = random_password.cluster_cookie.result
    VP_TOKEN_KEY      = random_id.token_key.hex
    VP_SMTP_URL       = "smtps://${aws_iam_access_key.smtp.id}:${urlencode(aws_iam_access_key.smtp.ses_smtp_password_v4)}@email-smtp.${var.region}.amazonaws.com:465"
    VP_MEDIA_URL      = "s3://${module.media.s3_bucket_id}/media"
    VP_MAIL_FROM      = local.mail_from
  })
}

# The migration Job's secret: the owner's url, and those of the roles it
# grants their access to (synced into the videoproject-migrate Secret).
resource "aws_secretsmanager_secret" "migrate" {
  name                    = "${local.name}/migrate"
  description             = "The videoproject migration Job's database urls; synced into the videoproject-migrate Secret"
  kms_key_id              = aws_kms_key.data.arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret_version" "migrate" {
  secret_id = aws_secretsmanager_secret.migrate.id
  secret_string = jsonencode({
    DATABASE_URL            = local.database_url.owner
    VP_APP_DATABASE_URL     = local.database_url.app
    VP_MONITOR_DATABASE_URL = local.database_url.keda
  })
}

# ---- image registry --------------------------------------------------------

resource "aws_ecr_repository" "image" {
  # one per environment: a second environment must not collide
  name                 = local.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.data.arn
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  repository = aws_ecr_repository.image.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last 50 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}
