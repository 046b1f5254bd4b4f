output "cluster_name" {
  description = "The EKS cluster; `aws eks update-kubeconfig --name <this>` points kubectl at it."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "The EKS API server."
  value       = module.eks.cluster_endpoint
}

output "database_address" {
  description = "The PostgreSQL host (private)."
  value       = module.database.db_instance_address
}

output "media_bucket" {
  description = "The media bucket (VP_MEDIA_URL=s3://<this>/media)."
  value       = module.media.s3_bucket_id
}

output "node_secret_arn" {
  description = "The Secrets Manager secret holding the nodes' secret settings."
  value       = aws_secretsmanager_secret.node.arn
}

output "node_role_arn" {
  description = "The IAM role the videoproject service account gets through EKS Pod Identity."
  value       = aws_iam_role.node.arn
}

output "image_repository" {
  description = "The ECR repository to push the image to."
  value       = aws_ecr_repository.image.repository_url
}

output "mail_dns_records" {
  description = "DKIM CNAME records to publish so SES may send from the domain."
  value       = aws_sesv2_email_identity.mail.dkim_signing_attributes[0].tokens
}

output "namespace" {
  description = "The Kubernetes namespace the environment's overlay deploys to."
  value       = local.namespace
}

output "mail_from" {
  description = "The sender of the nodes' emails (VP_MAIL_FROM, in the node secret)."
  value       = local.mail_from
}

output "keda_secret_arn" {
  description = "The Secrets Manager secret KEDA's connection is synced from (the videoproject-keda Secret)."
  value       = aws_secretsmanager_secret.keda.arn
}

output "migrate_secret_arn" {
  description = "The migration Job's database urls (owner, nodes' role, KEDA's role): create the videoproject-migrate Secret from it"
  value       = aws_secretsmanager_secret.migrate.arn
}

output "deploy_role_arn" {
  description = "The release workflow's role (the repository variable AWS_DEPLOY_ROLE_ARN); null without github_repository"
  value       = one(aws_iam_role.deploy[*].arn)
}
