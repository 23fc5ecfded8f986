{{/* NetworkPolicy building blocks. Pod groups are selected by component label; chart pods also
     by release. MPIJob pods that ops.launch.kubernetes creates carry only part-of and component,
     so the training group is selected by those two. */}}

{{- define "crawl2model.np.airflowComponents" -}}
{{- toJson (list "airflow-api-server" "airflow-scheduler" "airflow-dag-processor" "airflow-triggerer" "airflow-migrate") -}}
{{- end -}}

{{- define "crawl2model.np.taskComponents" -}}
{{- toJson (list "airflow-task" "airflow-worker") -}}
{{- end -}}

{{/* A label selector for this release's pods of some components: dict "root" $ "components" (list ...). */}}
{{- define "crawl2model.np.pods" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  app.kubernetes.io/part-of: crawl2model
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: {{ toJson .components }}}
{{- end -}}

{{- define "crawl2model.np.trainingPods" -}}
matchLabels:
  app.kubernetes.io/part-of: crawl2model
matchExpressions:
  - {key: app.kubernetes.io/component, operator: In, values: ["training-launcher", "training-worker"]}
{{- end -}}

{{/* Single-pod training (ops.launch.kubernetes.single_pod.training_pod_operator): the KubernetesPodOperator label. */}}
{{- define "crawl2model.np.podOperatorPods" -}}
matchLabels:
  kubernetes_pod_operator: "True"
{{- end -}}

{{/* Egress rule: to this release's pods of some components on some TCP ports (none: all). */}}
{{- define "crawl2model.np.toPods" -}}
- to:
    - podSelector:
        {{- include "crawl2model.np.pods" . | nindent 8 }}
  {{- with .ports }}
  ports:
    {{- range . }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{- define "crawl2model.np.fromPods" -}}
- from:
    - podSelector:
        {{- include "crawl2model.np.pods" . | nindent 8 }}
  {{- with .ports }}
  ports:
    {{- range . }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Egress rule to peers (a NetworkPolicyPeer list) on TCP ports: dict "to" list "ports" list. */}}
{{- define "crawl2model.np.toPeers" -}}
- to:
    {{- toYaml .to | nindent 4 }}
  {{- with .ports }}
  ports:
    {{- range . }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{- define "crawl2model.np.dns" -}}
- to:
    {{- toYaml .Values.networkPolicies.dns | nindent 4 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{- define "crawl2model.np.kubernetesApi" -}}
{{- $to := list -}}
{{- range .Values.networkPolicies.kubernetesApi.cidrs }}{{ $to = append $to (dict "ipBlock" (dict "cidr" .)) }}{{ end -}}
{{ include "crawl2model.np.toPeers" (dict "to" $to "ports" .Values.networkPolicies.kubernetesApi.ports) }}
{{- end -}}

{{/* S3: the configured peers and ports, or derived from s3.endpoint (AWS S3 when empty). */}}
{{- define "crawl2model.np.s3" -}}
{{- $np := .Values.networkPolicies -}}
{{- $to := $np.s3.to -}}
{{- $ports := $np.s3.ports -}}
{{- if not $to -}}
{{- if .Values.s3.endpoint -}}
{{- $to = list (dict "ipBlock" (dict "cidr" "0.0.0.0/0")) -}}
{{- else -}}
{{- $to = list (dict "ipBlock" (dict "cidr" "0.0.0.0/0" "except" $np.crawler.except)) -}}
{{- end -}}
{{- end -}}
{{- if not $ports -}}
{{- $url := urlParse (default "https://s3.amazonaws.com" .Values.s3.endpoint) -}}
{{- $hostPort := splitList ":" $url.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- $ports = list (int (last $hostPort)) -}}
{{- else -}}
{{- $ports = list (ternary 80 443 (eq $url.scheme "http")) -}}
{{- end -}}
{{- end -}}
{{ include "crawl2model.np.toPeers" (dict "to" $to "ports" $ports) }}
{{- end -}}

{{/* MLflow: the bundled server's pods, or the external server's peers. */}}
{{- define "crawl2model.np.mlflow" -}}
{{- if .Values.mlflow.enabled -}}
{{ include "crawl2model.np.toPods" (dict "root" . "components" (list "mlflow") "ports" (list 5000)) }}
{{- else -}}
{{ include "crawl2model.np.toPeers" .Values.networkPolicies.externalMlflow }}
{{- end -}}
{{- end -}}

{{/* The metadata database: the bundled Postgres, or the external database's peers. */}}
{{- define "crawl2model.np.database" -}}
{{- if .Values.postgresql.enabled -}}
{{ include "crawl2model.np.toPods" (dict "root" . "components" (list "postgresql") "ports" (list 5432)) }}
{{- else -}}
{{ include "crawl2model.np.toPeers" .Values.networkPolicies.externalDatabase }}
{{- end -}}
{{- end -}}

{{/* The Celery broker (CeleryExecutor only): bundled Redis or the external broker's peers. */}}
{{- define "crawl2model.np.broker" -}}
{{- if eq .Values.airflow.executor "CeleryExecutor" -}}
{{- if .Values.airflow.celery.brokerSecretName -}}
{{ include "crawl2model.np.toPeers" .Values.networkPolicies.externalBroker }}
{{- else -}}
{{ include "crawl2model.np.toPods" (dict "root" . "components" (list "redis") "ports" (list 6379)) }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Peers from outside the release (ingress controller) when a Service is published. */}}
{{- define "crawl2model.np.external" -}}
- from:
    {{- toYaml .root.Values.networkPolicies.ingressControllers | nindent 4 }}
  ports:
    - {protocol: TCP, port: {{ .port }}}
{{- end -}}

{{/* A NetworkPolicy: dict "root" $ "name" "x" "selector" (yaml) "ingress" (yaml list) "egress" (yaml list).
     It lists only the directions it allows (the default-deny policy isolates both), or both
     with "isolate" true for pods the default-deny policy does not select. */}}
{{- define "crawl2model.np.policy" -}}
{{- $types := list -}}
{{- if trim .ingress }}{{ $types = append $types "Ingress" }}{{ end -}}
{{- if or (trim .egress) .isolate }}{{ $types = append $types "Egress" }}{{ end -}}
{{- if and .isolate (not (trim .ingress)) }}{{ $types = prepend $types "Ingress" }}{{ end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ printf "%s-%s" (include "crawl2model.fullname" .root) .name }}
  labels:
    {{- include "crawl2model.componentLabels" (dict "root" .root "component" "network-policy") | nindent 4 }}
spec:
  podSelector:
    {{- .selector | nindent 4 }}
  policyTypes: {{ toJson $types }}
  {{- if trim .ingress }}
  ingress:
    {{- .ingress | trim | nindent 4 }}
  {{- end }}
  {{- if trim .egress }}
  egress:
    {{- .egress | trim | nindent 4 }}
  {{- end }}
{{- end -}}
