{{/* Slots (Horovod ranks) per worker: one per GPU, or cpuSlotsPerWorker on CPU. */}}
{{- define "crawl2model.training.slots" -}}
{{- if .Values.training.gpu.enabled }}{{ int .Values.training.gpu.perWorker }}{{ else }}{{ int .Values.training.cpuSlotsPerWorker }}{{ end -}}
{{- end -}}

{{/* Secrets of training jobs (ops/launch/kubernetes/pods.py: secret_files, secret_volume): never in a
     container's env, where horovodrun would export them onto every rank's ssh command line.
     The workers mount them as one 0440 file per variable at /var/run/secrets/crawl2model, and
     each rank starts through `python -m ops.lake.secret_env`, which loads that folder ($C2M_RANK_ENV_DIR). */}}
{{- define "crawl2model.training.hasSecrets" -}}
{{- if or .Values.s3.secretName .Values.mlflow.auth.enabled }}true{{ end -}}
{{- end -}}

{{- define "crawl2model.training.secretVolume" -}}
- name: job-secrets
  projected:
    defaultMode: 0440
    sources:
      {{- if .Values.s3.secretName }}
      - secret:
          name: {{ .Values.s3.secretName }}
          items:
            - {key: AWS_ACCESS_KEY_ID, path: AWS_ACCESS_KEY_ID}
            - {key: AWS_SECRET_ACCESS_KEY, path: AWS_SECRET_ACCESS_KEY}
      {{- end }}
      {{- if .Values.mlflow.auth.enabled }}
      - secret:
          name: {{ .Values.mlflow.auth.secretName }}
          items:
            - {key: {{ .Values.mlflow.auth.usernameKey }}, path: MLFLOW_TRACKING_USERNAME}
            - {key: {{ .Values.mlflow.auth.passwordKey }}, path: MLFLOW_TRACKING_PASSWORD}
      {{- end }}
{{- end -}}

{{/* The launcher's command: ops.launch.local.horovodrun_command's shape (binary, -np, --gloo,
     jobs python, -m [ops.lake.secret_env] module, args) with the MPI operator's hostfile instead of
     -H localhost:N, ssh on the image's port, and no loopback-only --network-interfaces.
     tests/helm checks it. */}}
{{- define "crawl2model.training.command" -}}
{{- $t := .Values.training -}}
{{- $venv := .Values.images.trainer.jobsVenv -}}
{{- $np := mul (int $t.workers) (int (include "crawl2model.training.slots" .)) -}}
{{- $cmd := list (printf "%s/bin/horovodrun" $venv) "-np" (toString $np) "--hostfile" "/etc/mpi/hostfile" "--gloo" "--ssh-port" "2222" -}}
{{- if $t.networkInterfaces }}{{ $cmd = concat $cmd (list "--network-interfaces" $t.networkInterfaces) }}{{ end -}}
{{- $cmd = append $cmd (printf "%s/bin/python" $venv) -}}
{{- if include "crawl2model.training.hasSecrets" . }}{{ $cmd = concat $cmd (list "-m" "ops.lake.secret_env" $t.module) }}
{{- else }}{{ $cmd = concat $cmd (list "-m" $t.module) }}{{ end -}}
{{- $cmd = concat $cmd $t.args -}}
{{- toJson $cmd -}}
{{- end -}}

{{/* Plain values only: horovodrun exports the launcher's env onto the ranks' command lines. */}}
{{- define "crawl2model.training.env" -}}
{{- range $key, $value := .Values.training.env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- if .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
{{- if include "crawl2model.training.hasSecrets" . }}
- name: C2M_RANK_ENV_DIR
  value: /var/run/secrets/crawl2model
{{- end }}
{{- end -}}

{{/* The MPIJob (kubeflow.org/v2beta1): one CPU launcher running horovodrun, N GPU workers
     running sshd as the image's non-root user. */}}
{{- define "crawl2model.training.mpijob" -}}
{{- $t := .Values.training -}}
{{- $image := include "crawl2model.image" (dict "root" . "image" .Values.images.trainer) -}}
apiVersion: kubeflow.org/v2beta1
kind: MPIJob
metadata:
  name: {{ include "crawl2model.fullname" . }}-train
  labels:
    {{- include "crawl2model.componentLabels" (dict "root" . "component" "training") | nindent 4 }}
spec:
  slotsPerWorker: {{ include "crawl2model.training.slots" . }}
  mpiImplementation: OpenMPI
  sshAuthMountPath: /home/c2m/.ssh
  runPolicy:
    cleanPodPolicy: Running
    backoffLimit: 0
    ttlSecondsAfterFinished: {{ $t.ttlSecondsAfterFinished }}
  mpiReplicaSpecs:
    Launcher:
      replicas: 1
      restartPolicy: Never
      template:
        metadata:
          labels:
            {{- include "crawl2model.componentLabels" (dict "root" . "component" "training-launcher") | nindent 12 }}
        spec:
          automountServiceAccountToken: false
          {{- with (include "crawl2model.imagePullSecrets" . | trim) }}{{ . | nindent 10 }}{{- end }}
          securityContext:
            {{- include "crawl2model.podSecurityContext" (dict "root" . "uid" 1000 "gid" 1000) | nindent 12 }}
          {{- with (include "crawl2model.platformScheduling" . | trim) }}{{ . | nindent 10 }}{{- end }}
          containers:
            - name: launcher
              image: {{ $image }}
              imagePullPolicy: {{ .Values.images.trainer.pullPolicy }}
              command: {{ include "crawl2model.training.command" . }}
              env:
                {{- include "crawl2model.training.env" . | trim | nindent 16 }}
              envFrom:
                - configMapRef:
                    name: {{ include "crawl2model.platformConfigMap" . }}
              securityContext:
                {{- include "crawl2model.containerSecurityContext" . | nindent 16 }}
              resources:
                {{- toYaml $t.launcherResources | nindent 16 }}
    Worker:
      replicas: {{ $t.workers }}
      restartPolicy: Never
      template:
        metadata:
          labels:
            {{- include "crawl2model.componentLabels" (dict "root" . "component" "training-worker") | nindent 12 }}
        spec:
          automountServiceAccountToken: false
          {{- with (include "crawl2model.imagePullSecrets" . | trim) }}{{ . | nindent 10 }}{{- end }}
          securityContext:
            {{- include "crawl2model.podSecurityContext" (dict "root" . "uid" 1000 "gid" 1000) | nindent 12 }}
          {{- with $t.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $t.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          containers:
            - name: worker
              image: {{ $image }}
              imagePullPolicy: {{ .Values.images.trainer.pullPolicy }}
              command: ["/usr/sbin/sshd", "-De", "-f", "/home/c2m/.sshd_config"]
              env:
                {{- include "crawl2model.training.env" . | trim | nindent 16 }}
              envFrom:
                - configMapRef:
                    name: {{ include "crawl2model.platformConfigMap" . }}
              ports:
                - name: ssh
                  containerPort: 2222
              securityContext:
                {{- include "crawl2model.containerSecurityContext" . | nindent 16 }}
              resources:
                {{- $res := deepCopy $t.workerResources }}
                {{- if $t.gpu.enabled }}
                {{- $limits := default (dict) $res.limits }}
                {{- $_ := set $limits $t.gpu.resourceName (int $t.gpu.perWorker) }}
                {{- $_ := set $res "limits" $limits }}
                {{- end }}
                {{- toYaml $res | nindent 16 }}
              volumeMounts:
                - name: dshm
                  mountPath: /dev/shm
                {{- if include "crawl2model.training.hasSecrets" . }}
                - name: job-secrets
                  mountPath: /var/run/secrets/crawl2model
                  readOnly: true
                {{- end }}
          volumes:
            - name: dshm
              emptyDir:
                medium: Memory
                sizeLimit: {{ $t.shmSize }}
            {{- if include "crawl2model.training.hasSecrets" . }}
            {{- include "crawl2model.training.secretVolume" . | nindent 12 }}
            {{- end }}
{{- end -}}
