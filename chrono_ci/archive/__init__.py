"""Archives and their records: names, the manifest, which archives exist, provenance and signatures."""
