{{/* The app-config the chart makes (the kernel's keys: docs/configuration.md), before .Values.appConfig. */}}
{{- define "kernel.generatedConfig" -}}
{{- $k := .Values.kernel -}}
{{- $baseUrl := .Values.baseUrl -}}
{{- if not $baseUrl -}}
{{- if .Values.ingress.enabled -}}
{{- $baseUrl = printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) .Values.ingress.host -}}
{{- else if and .Values.httpRoute.enabled .Values.httpRoute.hostnames -}}
{{- $baseUrl = printf "https://%s" (first .Values.httpRoute.hostnames) -}}
{{- else -}}
{{- $baseUrl = printf "http://%s.%s.svc:%v" (include "kernel.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}
{{- $workers := dict "replicas" $k.workerReplicas "shutdownGrace" $k.lifecycle.shutdownGrace "killTimeout" $k.lifecycle.killTimeout -}}
{{- if include "kernel.remoteEnabled" . -}}
{{- $plugins := dict -}}
{{- range $id, $w := (include "kernel.workerPlugins" . | fromYaml) -}}
{{- $_ := set $plugins $id (dict "replicas" $w.localReplicas) -}}
{{- end -}}
{{- $_ := set $workers "plugins" $plugins -}}
{{- $curve := include "kernel.curveDir" . -}}
{{- $_ := set $workers "remote" (dict
      "listen" (printf "0.0.0.0:%v" $k.ports.join)
      "advertise" (printf "${KERNEL_POD_IP}:%v" $k.ports.join)
      "serverKey" (printf "%s/server/server.key_secret" $curve)
      "allowedKeys" (printf "%s/workers" $curve)
      "heartbeatTimeout" .Values.workers.heartbeatTimeout) -}}
{{- end -}}
{{- $backend := dict
      "baseUrl" $baseUrl
      "listen" (dict "host" "0.0.0.0" "port" $k.ports.http)
      "gateway" (dict "processes" $k.gatewayProcesses)
      "workers" $workers
      "lifecycle" (dict "serverShutdownDelay" (printf "%vs" $k.lifecycle.serverShutdownDelay))
      "logging" (dict "format" "json")
      "metrics" (dict "enabled" .Values.metrics.enabled "host" "0.0.0.0" "port" $k.ports.metrics) -}}
{{- with .Values.postgresql -}}
{{- if .host -}}
{{- $conn := dict "host" .host "port" .port "user" .user -}}
{{- if .database -}}{{- $_ := set $conn "database" .database -}}{{- end -}}
{{- if include "kernel.postgresSecretNeeded" $ -}}
{{- $_ := set $conn "password" (dict "$file" "../secrets/postgresql/password") -}}
{{- end -}}
{{- $_ := set $backend "database" (dict "client" "pg" "connection" $conn "pluginDivisionMode" .pluginDivisionMode) -}}
{{- end -}}
{{- end -}}
{{- with .Values.redis -}}
{{- if .host -}}
{{- $url := printf "redis://%s:%v/%v" .host .port .db -}}
{{- $conn := $url -}}
{{- if include "kernel.redisSecretNeeded" $ -}}
{{- $conn = dict "$file" "../secrets/redis/url" -}}
{{- end -}}
{{- $cache := dict "store" "redis" "connection" $conn -}}
{{- if .keyPrefix -}}{{- $_ := set $cache "keyPrefix" .keyPrefix -}}{{- end -}}
{{- $_ := set $backend "cache" $cache -}}
{{- $wanted := dig "backend" "rateLimit" false $.Values.appConfig -}}
{{- if and .rateLimit (kindIs "map" $wanted) -}}
{{- $_ := set $backend "rateLimit" (dict "store" (dict "type" "redis" "connection" $conn)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "backend" $backend) -}}
{{- end -}}

{{/* The whole app-config: the chart's, then .Values.appConfig over it. */}}
{{- define "kernel.appConfig" -}}
{{- $generated := include "kernel.generatedConfig" . | fromYaml -}}
{{- toYaml (mergeOverwrite $generated (deepCopy .Values.appConfig)) -}}
{{- end -}}
