"""The example web app of bosun.platform: it stands for the seeds' APIs in the lab and the tests."""
