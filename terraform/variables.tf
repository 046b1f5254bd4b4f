variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "environment" {
  description = "dev or prod: prod gets Multi-AZ PostgreSQL, larger nodes and longer backups."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "vpc_cidr" {
  description = "The VPC's address range; the pods get addresses from it too (the prod overlay trusts it as the ingress's network)."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block."
  }
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group; ffmpeg wants compute-optimised ones."
  type        = list(string)
  default     = ["c7i.xlarge"]
}

variable "node_count" {
  description = "Minimum, desired and maximum nodes of the managed node group (the HorizontalPodAutoscaler scales pods within them)."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 3, max = 10 }

  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.desired && var.node_count.desired <= var.node_count.max
    error_message = "node_count must satisfy 1 <= min <= desired <= max."
  }
}

variable "db_instance_class" {
  description = "RDS instance class for PostgreSQL."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "db_allocated_storage_gb" {
  description = "Initial PostgreSQL storage in GiB; it grows on its own up to ten times this."
  type        = number
  default     = 50

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 6000
    error_message = "db_allocated_storage_gb must be between 20 and 6000."
  }
}

variable "media_retention_days" {
  description = "Days before a media object is deleted by the bucket itself; keep it at least VP_RETENTION_DAYS (the node deletes expired zips first)."
  type        = number
  default     = 14

  validation {
    condition     = var.media_retention_days >= 1
    error_message = "media_retention_days must be at least 1."
  }
}

variable "mail_from_domain" {
  description = "Domain the notification emails are sent from, verified in SES (its DNS records are an output)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+\\.[a-z]{2,}$", var.mail_from_domain))
    error_message = "mail_from_domain must be a domain name such as example.com."
  }
}

variable "admin_role_arns" {
  description = "IAM roles that administer the EKS cluster (cluster-admin): the platform team's. The release workflow has a narrower role of its own (github_repository)."
  type        = list(string)
  default     = []
}

variable "api_public_cidrs" {
  description = "Networks (CIDR) that may reach the Kubernetes API from outside the VPC: the operators' and the deploying runners' egress. Empty: the API is private to the VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_public_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "api_public_cidrs takes networks such as 203.0.113.0/24, never the whole internet."
  }
}

variable "github_repository" {
  description = "owner/name of the repository whose release workflow deploys here (its OIDC tokens become the deploy role). Empty: no deploy role."
  type        = string
  default     = ""
}

variable "github_environment" {
  description = "The GitHub environment the release job runs in (release.yml): only its tokens may take the deploy role."
  type        = string
  default     = "production"
}
