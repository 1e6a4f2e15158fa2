{{/* Labels on every object, indented for metadata.labels. */}}
{{- define "kubebid.labels" }}
    app.kubernetes.io/name: kubebid
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
    app.kubernetes.io/managed-by: {{ .Release.Service }}
    helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The container image. */}}
{{- define "kubebid.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The security context of every KubeBid container: the restricted Pod Security Standard and more. */}}
{{- define "kubebid.containerSecurityContext" }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            runAsUser: 65532
            runAsGroup: 65532
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
{{- end }}

{{/* Who acts for the platform (cluster admins, Kubernetes' control plane and its controllers' accounts), as
CEL over an admission request: the same expression as `kubebid generate webhooks` writes, from the tenancy
model. */}}
{{- define "kubebid.platformActors" -}}
(has(request.userInfo.groups) && 'system:masters' in request.userInfo.groups) || request.userInfo.username.startsWith('system:serviceaccount:kube-system:') || request.userInfo.username in ['system:kube-controller-manager', 'system:kube-scheduler', 'system:apiserver']
{{- end }}
