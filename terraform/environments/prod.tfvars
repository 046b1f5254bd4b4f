environment             = "prod"
region                  = "eu-west-1"
node_instance_types     = ["c7i.xlarge", "c7i.2xlarge"]
node_count              = { min = 3, desired = 3, max = 20 }
db_instance_class       = "db.m7g.large"
db_allocated_storage_gb = 200
mail_from_domain        = "videos.example.com"
