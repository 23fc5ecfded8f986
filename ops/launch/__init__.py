"""Launchers: start a Spark stage or a training module locally (:mod:`ops.launch.local`), in
podman containers (:mod:`ops.launch.podman`) or on Kubernetes (:mod:`ops.launch.kubernetes`);
:mod:`ops.launch.choose` picks one by configuration. Also the typed settings of the platform
(:mod:`ops.launch.settings`) and the stack's S3 client environment (:mod:`ops.launch.s3_client`)."""
