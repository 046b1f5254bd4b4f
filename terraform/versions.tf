terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.38"
    }
  }

  # State lives in S3 with native locking; the bucket is made once, by hand
  # or by a bootstrap stack (docs/deploy.md). Configure it per environment:
  #   terraform init -backend-config=backend/prod.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "videoproject"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
