{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "crawl2model.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crawl2model.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "crawl2model.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crawl2model.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Airflow control plane's ServiceAccount (scheduler, api-server, triggerer, ...). */}}
{{- define "crawl2model.airflowServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-airflow" (include "crawl2model.fullname" .)) .Values.serviceAccount.airflowName -}}
{{- else -}}
{{- required "serviceAccount.airflowName is required when serviceAccount.create=false" .Values.serviceAccount.airflowName -}}
{{- end -}}
{{- end -}}

{{/* Labels: common, and selector labels for one component (call with dict "root" $ "component" "x"). */}}
{{- define "crawl2model.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "crawl2model.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crawl2model
{{- end -}}

{{- define "crawl2model.componentLabels" -}}
{{ include "crawl2model.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "crawl2model.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crawl2model.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images: call with dict "root" $ "image" .Values.images.x */}}
{{- define "crawl2model.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository .image.tag -}}
{{- end -}}
{{- end -}}

{{/* Security contexts. Pod: the chart-wide settings plus the image's user (dict "root" $ "uid" N "gid" N). */}}
{{- define "crawl2model.podSecurityContext" -}}
{{- $ctx := deepCopy .root.Values.securityContext.pod -}}
{{- $_ := set $ctx "runAsUser" (int .uid) -}}
{{- $_ := set $ctx "runAsGroup" (int .gid) -}}
{{- $_ := set $ctx "fsGroup" (int (default .gid .fsGroup)) -}}
{{- toYaml $ctx -}}
{{- end -}}

{{- define "crawl2model.containerSecurityContext" -}}
{{- toYaml .Values.securityContext.container -}}
{{- end -}}

{{- define "crawl2model.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{- define "crawl2model.platformScheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Storage and services --------------------------------------------------------------- */}}

{{- define "crawl2model.s3Base" -}}
{{- printf "s3://%s/%s" .Values.s3.bucket .Values.s3.prefix -}}
{{- end -}}

{{- define "crawl2model.dataRoot" -}}
{{- default (printf "%sdata" (include "crawl2model.s3Base" .)) .Values.platform.dataRoot -}}
{{- end -}}

{{- define "crawl2model.mlflowService" -}}
{{- printf "%s-mlflow" (include "crawl2model.fullname" .) -}}
{{- end -}}

{{- define "crawl2model.mlflowUri" -}}
{{- if .Values.platform.mlflowTrackingUri -}}
{{- .Values.platform.mlflowTrackingUri -}}
{{- else -}}
{{- printf "http://%s:%d" (include "crawl2model.mlflowService" .) (int .Values.mlflow.service.port) -}}
{{- end -}}
{{- end -}}

{{- define "crawl2model.postgresHost" -}}
{{- printf "%s-postgresql" (include "crawl2model.fullname" .) -}}
{{- end -}}

{{- define "crawl2model.apiServerService" -}}
{{- printf "%s-airflow-api-server" (include "crawl2model.fullname" .) -}}
{{- end -}}

{{- define "crawl2model.platformConfigMap" -}}
{{- printf "%s-platform" (include "crawl2model.fullname" .) -}}
{{- end -}}

{{/* S3 credentials and endpoint for containers that touch S3 (a list of env entries). */}}
{{- define "crawl2model.s3Env" -}}
{{- if .Values.s3.secretName }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- if .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
{{- end -}}

{{/* Database password of the bundled Postgres, for URLs built with $(C2M_DB_PASSWORD). */}}
{{- define "crawl2model.dbPasswordEnv" -}}
- name: C2M_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.auth.secretName }}
      key: {{ .Values.postgresql.auth.passwordKey }}
{{- end -}}

{{/* Redis password, for the broker URL built with $(C2M_REDIS_PASSWORD). */}}
{{- define "crawl2model.redisPasswordEnv" -}}
- name: C2M_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.auth.secretName }}
      key: {{ .Values.redis.auth.passwordKey }}
{{- end -}}

{{/* MLflow client login (read by the mlflow client itself) for every container that logs runs. */}}
{{- define "crawl2model.mlflowClientEnv" -}}
{{- if .Values.mlflow.auth.enabled }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mlflow.auth.secretName }}
      key: {{ .Values.mlflow.auth.usernameKey }}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mlflow.auth.secretName }}
      key: {{ .Values.mlflow.auth.passwordKey }}
{{- end }}
{{- end -}}
