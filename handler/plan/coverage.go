package plan

import (
	"maps"
	"slices"
	"strings"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
)

// coverageAlerts watches what Atlas's documentation warns about when the EAR
// config requires private networking: a multi-cloud or AWS/GCP-only EAR
// cluster (unsupported-cluster, from the clusters alone), no usable endpoint
// at all (no-private-endpoint) and an Azure region of an EAR cluster without
// an endpoint that is ACTIVE or being (re)created (region-uncovered; Atlas deploys
// new clusters and nodes only in regions with approved endpoints). A project
// whose config does not require private networking resolves them all.
func (pl *planner) coverageAlerts() {
	if !pl.cfgOK {
		return
	}
	if c := pl.s.Config; !c.Enabled || !c.RequirePrivateNetworking {
		pl.judge(alert.UnsupportedCluster, alert.NoPrivateEndpoint, alert.RegionUncovered)
		return
	}
	if !pl.clustersOK {
		return
	}
	pl.judge(alert.UnsupportedCluster)
	regions := map[string][]string{} // Azure region → EAR clusters there
	var ear []string
	for _, cl := range pl.s.Clusters {
		if !cl.UsesAzureKeys() {
			continue
		}
		ear = append(ear, cl.Name)
		providers := map[string]bool{}
		for _, rc := range cl.RegionConfigs {
			providers[rc.ProviderName] = true
			if rc.ProviderName == "AZURE" && !slices.Contains(regions[rc.RegionName], cl.Name) {
				regions[rc.RegionName] = append(regions[rc.RegionName], cl.Name)
			}
		}
		names := strings.Join(slices.Sorted(maps.Keys(providers)), "+")
		why := ""
		switch {
		case len(providers) > 1:
			why = "it is multi-cloud (" + names + "); Atlas disables multi-cloud clusters when Key Vault access requires private networking"
		case len(providers) == 1 && !providers["AZURE"]:
			why = "it runs on " + names + "; Atlas supports Key Vault access over private networking only for Azure clusters"
		default:
			continue
		}
		pl.raise(alertOf(alert.UnsupportedCluster, cl.Name, map[string]string{"cluster": cl.Name, "providers": names},
			"Cluster %s is encrypted with the Azure Key Vault key, but %s.", cl.Name, why))
	}
	if !pl.endpointsOK {
		return
	}
	pl.judge(alert.NoPrivateEndpoint, alert.RegionUncovered)
	// A region is covered by an endpoint that is ACTIVE or being created, or
	// that Atlas is recreating (connection-rejected already says so).
	covered, usable := map[string]bool{}, false
	for _, e := range pl.s.Endpoints {
		ok := e.Status == atlas.StatusActive || e.Requesting()
		usable = usable || ok
		covered[e.RegionName] = covered[e.RegionName] || ok || e.Status == atlas.StatusPendingRecreation
	}
	// Only EAR clusters in Azure regions need an endpoint; AWS- or GCP-only
	// ones are unsupported-cluster, which an Azure endpoint would not fix.
	if len(regions) > 0 && !usable {
		slices.Sort(ear)
		pl.raise(alertOf(alert.NoPrivateEndpoint, "", map[string]string{"clusters": strings.Join(ear, ","), "regions": strings.Join(slices.Sorted(maps.Keys(regions)), ",")},
			"Atlas requires private networking to the vault, but the project has no EAR private endpoint that is ACTIVE or being created; Atlas cannot reach the key for cluster(s) %s.", strings.Join(ear, ", ")))
		return // region-uncovered would repeat it per region
	}
	for region, clusters := range regions {
		if covered[region] {
			continue
		}
		slices.Sort(clusters)
		pl.raise(alertOf(alert.RegionUncovered, region, map[string]string{"region": region, "clusters": strings.Join(clusters, ",")},
			"Azure region %s of cluster(s) %s has no Atlas EAR private endpoint that is ACTIVE or being created; Atlas deploys new clusters and nodes only in regions with approved endpoints.", region, strings.Join(clusters, ", ")))
	}
}
