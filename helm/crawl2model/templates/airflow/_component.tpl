{{/* A long-running Airflow component: dict "root" $ "name" "scheduler" "args" (list ...) "values" .Values.airflow.x "image" .Values.images.x "worker" bool "probe" (list ...) */}}
{{- define "crawl2model.airflow.component" -}}
{{- $root := .root -}}
{{- $component := printf "airflow-%s" .name -}}
{{- $podTemplate := and (eq .name "scheduler") (eq $root.Values.airflow.executor "KubernetesExecutor") -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-%s" (include "crawl2model.fullname" $root) $component }}
  labels:
    {{- include "crawl2model.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- include "crawl2model.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "crawl2model.componentLabels" (dict "root" $root "component" $component) | nindent 8 }}
    spec:
      {{- if .worker }}
      {{- include "crawl2model.airflow.taskPodCommon" $root | nindent 6 }}
      {{- else }}
      {{- include "crawl2model.airflow.podCommon" $root | nindent 6 }}
      {{- end }}
      {{- if eq .name "dag-processor" }}
      automountServiceAccountToken: false
      {{- end }}
      terminationGracePeriodSeconds: {{ .worker | ternary 600 60 }}
      initContainers:
        {{- include "crawl2model.airflow.waitForMigrations" $root | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "crawl2model.image" (dict "root" $root "image" .image) }}
          imagePullPolicy: {{ .image.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- if .worker }}
            {{- include "crawl2model.airflow.workerEnv" $root | trim | nindent 12 }}
            {{- else }}
            {{- include "crawl2model.airflow.env" $root | trim | nindent 12 }}
            {{- end }}
          envFrom:
            {{- include "crawl2model.airflow.envFrom" $root | nindent 12 }}
          {{- with .probe }}
          livenessProbe:
            exec:
              command: {{ toJson . }}
            initialDelaySeconds: 60
            periodSeconds: 60
            timeoutSeconds: 30
            failureThreshold: 5
          {{- end }}
          securityContext:
            {{- include "crawl2model.containerSecurityContext" $root | nindent 12 }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          {{- if or .worker $podTemplate }}
          volumeMounts:
            {{- if .worker }}
            - name: spark-conf
              mountPath: /opt/c2m/spark-conf
              readOnly: true
            {{- end }}
            {{- if $podTemplate }}
            - name: pod-template
              mountPath: /opt/c2m/pod-template
              readOnly: true
            {{- end }}
          {{- end }}
      {{- if or .worker $podTemplate }}
      volumes:
        {{- if .worker }}
        - name: spark-conf
          configMap:
            name: {{ printf "%s-spark-conf" (include "crawl2model.fullname" $root) }}
        {{- end }}
        {{- if $podTemplate }}
        - name: pod-template
          configMap:
            name: {{ printf "%s-pod-template" (include "crawl2model.fullname" $root) }}
        {{- end }}
      {{- end }}
{{- end -}}
