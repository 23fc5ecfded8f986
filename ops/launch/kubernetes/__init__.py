"""Launching on a Kubernetes cluster: Spark stages on k8s, Horovod training across GPU pods.

The same stage and training code runs here as on a laptop; only the launch differs:

- **Where and how** (:mod:`.cluster`): :class:`~ops.launch.kubernetes.cluster.ClusterConfig`,
  the namespace, images, GPUs, node selector, tolerations and Secrets, from ``C2M_K8S_*`` or
  the Airflow Variable ``c2m_cluster``.
- **Spark** (:mod:`.spark`): spark-submit in client mode from the task pod with
  ``--master k8s://…``, executors from the Spark image, and data roots as ``s3a://`` (what
  Hadoop's S3A connector in the Spark image reads). With ``s3a_roots`` the conf also sets
  ``spark.crawl2model.s3.io=s3a``: stages then read and write the bucket through Spark
  directly instead of staging through the driver.
- **Training** as a Kubeflow MPIJob (:mod:`.mpijob`, the shape of the Helm chart's
  ``templates/training`` template): a CPU launcher pod runs ``horovodrun --hostfile`` over
  N worker pods of the trainer image, with GPUs, node selector and tolerations from the
  config. :mod:`.single_pod` builds the single-pod variant (one multi-GPU pod,
  ``horovodrun -H localhost:N``) as a deferrable KubernetesPodOperator.
- **Secrets of training jobs** (:mod:`.pods`, what every pod running ranks gets): S3 keys and
  ``ClusterConfig.secret_env`` are never in a container's environment: horovodrun exports its
  whole environment onto every rank's command line (``ssh worker env NAME=value … python …``),
  which ``ps`` shows. The Secrets are mounted on the pods that run ranks (one 0440 file per
  variable), and each rank starts through ``python -m ops.lake.secret_env``, which loads that
  folder (named by the plain variable ``C2M_RANK_ENV_DIR``) into its own environment. The
  MPIJob's launcher gets no secret at all: it only runs horovodrun over ssh.

:class:`~ops.launch.kubernetes.launcher.KubernetesLauncher` (:mod:`.launcher`) implements
:class:`ops.launch.local.Launcher` with these and makes the Kubernetes API calls. The builders
are pure functions of a config, so tests render them to the final command or manifest without
a cluster. Nothing in this package imports Airflow or the Kubernetes client at module level.
"""
