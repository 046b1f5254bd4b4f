environment         = "dev"
region              = "eu-west-1"
node_instance_types = ["c7i.large"]
node_count          = { min = 1, desired = 2, max = 3 }
db_instance_class   = "db.t4g.small"
mail_from_domain    = "dev.videos.example.com"
