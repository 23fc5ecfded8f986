{{/* Executor pod template: Spark fills in image, command, env and resources; the chart adds
     security context and scheduling. The container name must match Spark's default. */}}
{{- define "crawl2model.spark.executorPodSpec" -}}
automountServiceAccountToken: false
{{- include "crawl2model.imagePullSecrets" . }}
securityContext:
  {{- include "crawl2model.podSecurityContext" (dict "root" . "uid" 1000 "gid" 1000) | nindent 2 }}
{{- include "crawl2model.platformScheduling" . }}
containers:
  - name: spark-kubernetes-executor
    securityContext:
      {{- include "crawl2model.containerSecurityContext" . | nindent 6 }}
{{- end -}}
