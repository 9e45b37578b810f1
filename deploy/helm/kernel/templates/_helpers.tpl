{{/* Names and labels (the usual Helm shapes). */}}
{{- define "kernel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kernel.fullname" -}}
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

{{- define "kernel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kernel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kernel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kernel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The kernel's pods: selector labels of component "kernel". */}}
{{- define "kernel.kernelSelector" -}}
{{ include "kernel.selectorLabels" . }}
app.kubernetes.io/component: kernel
{{- end -}}

{{/* One plugin's worker pods: (dict "root" $ "id" pluginId). */}}
{{- define "kernel.workerSelector" -}}
{{ include "kernel.selectorLabels" .root }}
app.kubernetes.io/component: worker
kernel.dev/plugin: {{ .id }}
{{- end -}}

{{/* A plugin's Kubernetes name part: ids may hold characters a name may not. */}}
{{- define "kernel.pluginName" -}}
{{- . | lower | replace "_" "-" | replace "." "-" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "kernel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kernel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kernel.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* Each plugin with remote workers, its values merged over workers.defaults: a dict id -> values. */}}
{{- define "kernel.workerPlugins" -}}
{{- $out := dict -}}
{{- range $id, $own := .Values.workers.plugins -}}
{{- $_ := set $out $id (mergeOverwrite (deepCopy $.Values.workers.defaults) (default dict $own)) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "kernel.remoteEnabled" -}}
{{- if .Values.workers.plugins -}}true{{- end -}}
{{- end -}}

{{/* Where the kernel's files are mounted: the config's $file paths are relative to the config's folder. */}}
{{- define "kernel.configDir" -}}/etc/kernel/config{{- end -}}
{{- define "kernel.curveDir" -}}/etc/kernel/curve{{- end -}}

{{- define "kernel.serverSecret" -}}
{{- default (printf "%s-curve-server" (include "kernel.fullname" .)) .Values.curve.serverSecret -}}
{{- end -}}
{{- define "kernel.allowedKeysSecret" -}}
{{- default (printf "%s-curve-allowed" (include "kernel.fullname" .)) .Values.curve.allowedKeysSecret -}}
{{- end -}}
{{/* (dict "root" $ "id" pluginId "values" merged) */}}
{{- define "kernel.workerKeySecret" -}}
{{- default (printf "%s-worker-%s" (include "kernel.fullname" .root) (include "kernel.pluginName" .id)) .values.keySecret -}}
{{- end -}}

{{- define "kernel.postgresSecret" -}}
{{- default (printf "%s-postgresql" (include "kernel.fullname" .)) .Values.postgresql.existingSecret -}}
{{- end -}}
{{- define "kernel.redisSecret" -}}
{{- default (printf "%s-redis" (include "kernel.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}
{{- define "kernel.redisSecretNeeded" -}}
{{- if and .Values.redis.host (or .Values.redis.password .Values.redis.existingSecret) -}}true{{- end -}}
{{- end -}}
{{- define "kernel.postgresSecretNeeded" -}}
{{- if and .Values.postgresql.host (or .Values.postgresql.password .Values.postgresql.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "kernel.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}
{{- define "kernel.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{- define "kernel.pullPolicy" -}}
{{- default (ternary "IfNotPresent" "Always" (not (empty .Values.image.digest))) .Values.image.pullPolicy -}}
{{- end -}}

{{/* checkov's skip of its "image should use digest" check, with the reason, while no digest is given. */}}
{{- define "kernel.digestSkip" -}}
{{- if not .Values.image.digest -}}
checkov.io/skip9: CKV_K8S_43=no image of this chart is published; set image.digest to pin the one you built (docs/deploying.md)
{{- end -}}
{{- end -}}
