"""The model's weights in the stack's S3 bucket: the bucket, who may read or write which prefix, and the Job
that stages a model revision from Hugging Face into it."""
