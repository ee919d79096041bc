package atlassim

// AddRegion adds a region config (providerName, regionName) to every
// replication spec of the cluster; false when the project or cluster is
// unknown. A multi-cloud cluster is one with regions of several providers.
func (s *Sim) AddRegion(groupID, cluster, provider, region string) bool {
	return s.withCluster(groupID, cluster, func(c *Cluster) {
		for len(c.Providers) < len(c.Regions) {
			c.Providers = append(c.Providers, "")
		}
		c.Regions, c.Providers = append(c.Regions, region), append(c.Providers, provider)
	})
}

// withCluster runs f on the named cluster under the lock; false when the
// project or cluster is unknown.
func (s *Sim) withCluster(groupID, name string, f func(*Cluster)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.projects[groupID]; p != nil {
		for i := range p.clusters {
			if p.clusters[i].Name == name {
				f(&p.clusters[i])
				return true
			}
		}
	}
	return false
}

// provider is the providerName of Regions[i]: Providers[i], AZURE when unset.
func (c Cluster) provider(i int) string {
	if i < len(c.Providers) && c.Providers[i] != "" {
		return c.Providers[i]
	}
	return "AZURE"
}
