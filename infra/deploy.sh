#!/usr/bin/env bash
# Deploy atlas-akv-guard into an existing resource group, in three steps:
#   infra    phase 1: everything but the Event Grid subscriptions
#   publish  upload dist/app.zip (Flex: config-zip; Elastic Premium: blob + restart)
#   events   phase 2: the Event Grid subscriptions (they validate the deployed functions)
#
# usage: infra/deploy.sh RESOURCE_GROUP [PARAMS] [ZIP]
#   PARAMS  your parameters: infra/main.bicepparam (the default; a copy of
#           infra/example.bicepparam, git-ignored, also what azd reads) or an ARM
#           .json parameters file (e.g. infra/main.parameters.json)
#   ZIP     the package built by `make package` (default dist/app.zip)
# env:
#   STEPS            steps to run (default "infra publish events")
#   DEPLOYMENT_NAME  ARM deployment name (default atlas-akv-guard)
# Secrets come from the environment (ATLAS_CLIENT_SECRET, ATLAS_PRIVATE_KEY,
# GUARD_ALERT_WEBHOOK_URL), never from the command line: a .bicepparam reads
# them with readEnvironmentVariable(); for a .json parameters file this script
# writes them to a private temporary parameters file.
set -euo pipefail

die() { echo "deploy: $*" >&2; exit 1; }
log() { echo "deploy: $*" >&2; }

here=$(cd "$(dirname "$0")" && pwd)
rg=${1:-}
[ -n "$rg" ] || die "usage: infra/deploy.sh RESOURCE_GROUP [PARAMS] [ZIP]"
params=${2:-$here/main.bicepparam}
zip=${3:-dist/app.zip}
steps=${STEPS:-infra publish events}
name=${DEPLOYMENT_NAME:-atlas-akv-guard}

command -v az >/dev/null || die "the Azure CLI (az >= 2.60) is required"
[ -f "$params" ] || die "parameters file $params not found (cp infra/example.bicepparam infra/main.bicepparam and fill it in)"
case $params in
*.bicepparam)
	# az resolves `using` relative to the parameters file and refuses a
	# --template-file that differs from it: the file must point at main.bicep.
	using=$(sed -n "s/^using[[:space:]]*'\([^']*\)'.*/\1/p" "$params" | head -n 1)
	target=$(cd "$(dirname "$params")" && cd "$(dirname "$using")" 2>/dev/null && pwd)/${using##*/}
	[ -n "$using" ] && [ "$target" = "$here/main.bicep" ] ||
		die "$params: using '$using' does not resolve to infra/main.bicep; keep the file in infra/ (using 'main.bicep')" ;;
*.json) ;;
*) die "$params: want a .bicepparam or .json parameters file" ;;
esac
az group show --name "$rg" --output none 2>/dev/null ||
	die "resource group $rg not found (az group create --name $rg --location <region>)"

secrets=
trap '[ -z "$secrets" ] || rm -f "$secrets"' EXIT
# secret_params writes the secrets set in the environment to a private ARM
# parameters file (for .json parameters) and prints its name.
secret_params() {
	local f sep= pair env v
	f=$(mktemp) && chmod 600 "$f"
	{
		printf '{"$schema":"https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#","contentVersion":"1.0.0.0","parameters":{'
		for pair in atlasClientSecret=ATLAS_CLIENT_SECRET atlasPrivateKey=ATLAS_PRIVATE_KEY alertWebhookUrl=GUARD_ALERT_WEBHOOK_URL; do
			env=${pair#*=}
			v=${!env:-}
			[ -n "$v" ] || continue
			[[ $v != *[[:cntrl:]]* ]] || die "$env holds a control character"
			v=${v//\\/\\\\}
			printf '%s"%s":{"value":"%s"}' "$sep" "${pair%%=*}" "${v//\"/\\\"}"
			sep=,
		done
		printf '}}\n'
	} >"$f"
	echo "$f"
}

# deploy_infra true|false: one ARM deployment with deployEventSubscriptions set
# (a .bicepparam reads DEPLOY_EVENT_SUBSCRIPTIONS; a .json file gets an override).
deploy_infra() {
	local events=$1
	log "ARM deployment $name (deployEventSubscriptions=$events)"
	case $params in
	*.bicepparam)
		DEPLOY_EVENT_SUBSCRIPTIONS=$events az deployment group create \
			--resource-group "$rg" --name "$name" --parameters "$params" --output none ;;
	*)
		[ -n "$secrets" ] || secrets=$(secret_params)
		az deployment group create --resource-group "$rg" --name "$name" \
			--template-file "$here/main.bicep" --parameters "@$params" --parameters "@$secrets" \
			--parameters deployEventSubscriptions="$events" --output none ;;
	esac
}

# The guard's resources carry the tag application=atlas-akv-guard.
find_resource() {
	az resource list --resource-group "$rg" --resource-type "$1" \
		--tag application=atlas-akv-guard --query "[0].name" --output tsv
}

publish() {
	[ -f "$zip" ] || die "$zip not found: run make package"
	local app plan account id
	app=$(find_resource Microsoft.Web/sites)
	[ -n "$app" ] || die "no atlas-akv-guard function app in $rg: run the infra step first"
	plan=$(az functionapp show --resource-group "$rg" --name "$app" --query sku --output tsv)
	id=$(az functionapp show --resource-group "$rg" --name "$app" --query id --output tsv)
	log "publishing $zip to $app ($plan)"
	case $plan in
	FlexConsumption)
		# Role assignments made in phase 1 can take a minute to propagate.
		local try
		for try in 1 2 3 4; do
			az functionapp deployment source config-zip --resource-group "$rg" --name "$app" \
				--src "$zip" --output none && break
			[ "$try" -lt 4 ] || die "publishing failed"
			log "publish attempt $try failed; retrying in 30s"
			sleep 30
		done ;;
	*)
		# Elastic Premium runs from the package blob (WEBSITE_RUN_FROM_PACKAGE);
		# uploading needs Storage Blob Data Contributor on the container
		# (deployerPrincipalId parameter).
		account=$(find_resource Microsoft.Storage/storageAccounts)
		az storage blob upload --auth-mode login --account-name "$account" \
			--container-name app-package --name app.zip --file "$zip" --overwrite --output none
		az functionapp restart --resource-group "$rg" --name "$app" --output none
		az rest --method post --output none \
			--url "https://management.azure.com${id}/syncfunctiontriggers?api-version=2024-04-01" ;;
	esac
	log "waiting for the functions to be indexed"
	local i names
	for i in $(seq 1 30); do
		names=$(az functionapp function list --resource-group "$rg" --name "$app" --query "[].name" --output tsv 2>/dev/null || true)
		if grep -q 'KeyVaultEvents' <<<"$names" && grep -q 'PrivateLinkEvents' <<<"$names"; then
			return 0
		fi
		sleep 10
	done
	die "functions KeyVaultEvents/PrivateLinkEvents not listed after 5 minutes; check the app's logs, then rerun with STEPS=events"
}

for step in $steps; do
	case $step in
	infra) deploy_infra false ;;
	publish) publish ;;
	events) deploy_infra true ;;
	*) die "unknown step $step (infra, publish, events)" ;;
	esac
done

app=$(find_resource Microsoft.Web/sites)
host=$(az functionapp show --resource-group "$rg" --name "$app" --query defaultHostName --output tsv)
log "done. Status: https://$host/api/Status?code=\$(az functionapp function keys list --resource-group $rg --name $app --function-name Status --query default --output tsv)"
