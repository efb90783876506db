"""S3 and S3-compatible object stores behind the storage protocol; every botocore error is translated here."""
