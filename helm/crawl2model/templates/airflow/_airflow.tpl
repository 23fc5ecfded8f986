{{/* Environment shared by every Airflow container: executor, database, keys, logging, C2M_*. */}}
{{- define "crawl2model.airflow.env" -}}
{{- $v := .Values -}}
{{- if $v.postgresql.enabled }}
{{ include "crawl2model.dbPasswordEnv" . }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  value: {{ printf "postgresql+psycopg2://%s:$(C2M_DB_PASSWORD)@%s:5432/airflow" $v.postgresql.auth.username (include "crawl2model.postgresHost" .) | quote }}
{{- else }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.external.secretName }}
      key: {{ $v.database.external.airflowConnKey }}
{{- end }}
- name: AIRFLOW__CORE__EXECUTOR
  value: {{ $v.airflow.executor }}
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.airflow.secretName }}
      key: fernet-key
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.airflow.secretName }}
      key: jwt-secret
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ printf "http://%s:%d/execution/" (include "crawl2model.apiServerService" .) (int $v.airflow.apiServer.service.port) | quote }}
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS
  value: {{ $v.airflow.simpleAuthUsers | quote }}
{{- if eq $v.airflow.executor "CeleryExecutor" }}
{{- if $v.airflow.celery.brokerSecretName }}
- name: AIRFLOW__CELERY__BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.airflow.celery.brokerSecretName }}
      key: broker-url
{{- else }}
{{ include "crawl2model.redisPasswordEnv" . }}
- name: AIRFLOW__CELERY__BROKER_URL
  value: {{ printf "redis://:$(C2M_REDIS_PASSWORD)@%s-redis:6379/0" (include "crawl2model.fullname" .) | quote }}
{{- end }}
- name: AIRFLOW__CELERY__WORKER_CONCURRENCY
  value: {{ $v.airflow.workers.concurrency | quote }}
{{- else }}
- name: AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE
  value: /opt/c2m/pod-template/pod_template.yaml
- name: AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS
  value: "True"
{{- end }}
{{- if $v.airflow.remoteLogging }}
- name: AIRFLOW__LOGGING__REMOTE_LOGGING
  value: "True"
- name: AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER
  value: {{ printf "%sairflow-logs" (include "crawl2model.s3Base" .) | quote }}
- name: AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID
  value: aws_default
- name: AIRFLOW_CONN_AWS_DEFAULT
  {{- $extra := dict "region_name" $v.s3.region }}
  {{- if $v.s3.endpoint }}{{ $_ := set $extra "endpoint_url" $v.s3.endpoint }}{{ end }}
  value: {{ dict "conn_type" "aws" "extra" $extra | toJson | quote }}
{{- end }}
{{- include "crawl2model.s3Env" . }}
{{- range $key, $value := $v.airflow.config }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The task runner adds: its pod IP (Spark driver host) and the Spark client configuration. */}}
{{- define "crawl2model.airflow.workerEnv" -}}
{{ include "crawl2model.airflow.env" . }}
- name: C2M_HOST
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: C2M_JOBS_VENV
  value: {{ .Values.images.airflowWorker.jobsVenv | quote }}
- name: SPARK_CONF_DIR
  value: /opt/c2m/spark-conf
{{- include "crawl2model.mlflowClientEnv" . }}
{{- end -}}

{{- define "crawl2model.airflow.envFrom" -}}
- configMapRef:
    name: {{ include "crawl2model.platformConfigMap" . }}
{{- end -}}

{{/* Init container: wait until `airflow db migrate` (the hook Job) has finished. */}}
{{- define "crawl2model.airflow.waitForMigrations" -}}
- name: wait-for-airflow-migrations
  image: {{ include "crawl2model.image" (dict "root" . "image" .Values.images.airflow) }}
  imagePullPolicy: {{ .Values.images.airflow.pullPolicy }}
  args: ["db", "check-migrations", "--migration-wait-timeout=600"]
  env:
    {{- include "crawl2model.airflow.env" . | trim | nindent 4 }}
  envFrom:
    {{- include "crawl2model.airflow.envFrom" . | nindent 4 }}
  securityContext:
    {{- include "crawl2model.containerSecurityContext" . | nindent 4 }}
  resources:
    requests: {cpu: 50m, memory: 256Mi}
    limits: {cpu: 500m, memory: 512Mi}
{{- end -}}

{{/* Pod-level settings every Airflow control-plane pod shares (uid 50000, gid 0 as in the
     official image). Task pods and Celery workers use taskPodCommon: the launcher account. */}}
{{- define "crawl2model.airflow.podCommon" -}}
serviceAccountName: {{ include "crawl2model.airflowServiceAccountName" . }}
{{- include "crawl2model.airflow.podRest" . }}
{{- end -}}

{{- define "crawl2model.airflow.taskPodCommon" -}}
serviceAccountName: {{ include "crawl2model.serviceAccountName" . }}
{{- include "crawl2model.airflow.podRest" . }}
{{- end -}}

{{- define "crawl2model.airflow.podRest" -}}
{{- include "crawl2model.imagePullSecrets" . }}
securityContext:
  {{- include "crawl2model.podSecurityContext" (dict "root" . "uid" 50000 "gid" 0) | nindent 2 }}
{{- include "crawl2model.platformScheduling" . }}
{{- end -}}

{{/* Spec of a KubernetesExecutor task pod (rendered into the pod-template ConfigMap). */}}
{{- define "crawl2model.airflow.taskPodSpec" -}}
{{ include "crawl2model.airflow.taskPodCommon" . }}
restartPolicy: Never
containers:
  - name: base
    image: {{ include "crawl2model.image" (dict "root" . "image" .Values.images.airflowWorker) }}
    imagePullPolicy: {{ .Values.images.airflowWorker.pullPolicy }}
    env:
      {{- include "crawl2model.airflow.workerEnv" . | trim | nindent 6 }}
    envFrom:
      {{- include "crawl2model.airflow.envFrom" . | nindent 6 }}
    securityContext:
      {{- include "crawl2model.containerSecurityContext" . | nindent 6 }}
    resources:
      {{- toYaml .Values.airflow.workers.resources | nindent 6 }}
    volumeMounts:
      - name: spark-conf
        mountPath: /opt/c2m/spark-conf
        readOnly: true
volumes:
  - name: spark-conf
    configMap:
      name: {{ printf "%s-spark-conf" (include "crawl2model.fullname" .) }}
{{- end -}}
