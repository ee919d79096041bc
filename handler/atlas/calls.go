package atlas

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

const (
	pageSize = 500  // the itemsPerPage asked for (Atlas's maximum)
	maxPages = 1000 // stops a server that keeps announcing more pages
)

// groupPath returns the project's API path, or an *Error (no request made)
// when groupID isn't 24 lowercase hex digits, so a bad setting never reaches
// a URL.
func groupPath(op, groupID string) (string, error) {
	if !groupIDPattern.MatchString(groupID) {
		return "", &Error{Op: op, Reason: "invalid argument", Detail: fmt.Sprintf("group id %q is not 24 hex digits", alert.ScrubN(groupID, 64))}
	}
	return "/api/atlas/v2/groups/" + groupID, nil
}

var groupIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// EncryptionAtRest returns the project's encryption-at-rest configuration
// (GET /api/atlas/v2/groups/{groupId}/encryptionAtRest, version 2023-01-01).
// When the project has no Azure Key Vault configured, AzureKeyVault is the
// zero value (Enabled false); Valid is nil when Atlas doesn't report it. An
// unknown project is an *Error with StatusCode 404.
func (c *Client) EncryptionAtRest(ctx context.Context, groupID string) (EncryptionAtRest, error) {
	var ear EncryptionAtRest
	p, err := groupPath("EncryptionAtRest", groupID)
	if err == nil {
		err = c.get(ctx, "EncryptionAtRest", p+"/encryptionAtRest", nil, acceptEAR, &ear)
	}
	if err != nil {
		return EncryptionAtRest{}, err
	}
	return ear, nil
}

// PrivateEndpoints returns every Azure EAR private endpoint of the project
// (GET …/encryptionAtRest/AZURE/privateEndpoints, version 2023-01-01).
// Like Clusters and AlertConfigs it reads all pages and returns the items in
// Atlas's order without duplicates (by id), should items shift between
// pages; none is an empty, non-nil slice.
func (c *Client) PrivateEndpoints(ctx context.Context, groupID string) ([]PrivateEndpoint, error) {
	return listAll(ctx, c, "PrivateEndpoints", groupID, "/encryptionAtRest/AZURE/privateEndpoints", acceptEAR,
		func(e PrivateEndpoint) string { return e.ID })
}

// AlertConfigs returns every alert configuration of the project (GET
// …/alertConfigs, version 2023-01-01; Atlas requires Project Read Only).
func (c *Client) AlertConfigs(ctx context.Context, groupID string) ([]AlertConfig, error) {
	return listAll(ctx, c, "AlertConfigs", groupID, "/alertConfigs", acceptEAR, func(a AlertConfig) string { return a.ID })
}

// clusterWire is the part of ClusterDescription20240805 the client reads.
type clusterWire struct {
	Cluster
	ReplicationSpecs []struct {
		RegionConfigs []RegionConfig `json:"regionConfigs"`
	} `json:"replicationSpecs"`
}

// Clusters returns every cluster of the project (GET …/clusters, version
// 2024-08-05). RegionConfigs lists replicationSpecs[].regionConfigs[]
// de-duplicated in first-seen order (nil when there are none).
func (c *Client) Clusters(ctx context.Context, groupID string) ([]Cluster, error) {
	items, err := listAll(ctx, c, "Clusters", groupID, "/clusters", acceptClusters,
		func(w clusterWire) string { return cmp.Or(w.ID, "name:"+w.Name) })
	if err != nil {
		return nil, err
	}
	out := make([]Cluster, 0, len(items))
	for _, w := range items {
		cl := w.Cluster
		cl.RegionConfigs = nil
		for _, rs := range w.ReplicationSpecs {
			for _, rc := range rs.RegionConfigs {
				if rc.RegionName != "" && !slices.Contains(cl.RegionConfigs, rc) {
					cl.RegionConfigs = append(cl.RegionConfigs, rc)
				}
			}
		}
		out = append(out, cl)
	}
	return out, nil
}

// page is Atlas's paginated envelope.
type page[T any] struct {
	Results    *[]T                   `json:"results"`
	TotalCount *int                   `json:"totalCount"`
	Links      []struct{ Rel string } `json:"links"`
}

// listAll reads every page of the project's paginated route and drops the
// items whose key was seen before (items without a key all stay). It asks
// for pageSize items per page and moves on by pageNum (never by following a
// link's href, which could point elsewhere); morePages says when to stop.
func listAll[T any](ctx context.Context, c *Client, op, groupID, route, accept string, key func(T) string) ([]T, error) {
	p, err := groupPath(op, groupID)
	if err != nil {
		return nil, err
	}
	all, seen, total := []T{}, map[string]bool{}, 0 // total counts duplicates too
	for n := 1; ; n++ {
		if n > maxPages {
			return nil, &Error{Op: op, StatusCode: 200, Reason: "too many pages", Detail: fmt.Sprintf("more than %d pages", maxPages)}
		}
		q := url.Values{"includeCount": {"true"}, "itemsPerPage": {strconv.Itoa(pageSize)}, "pageNum": {strconv.Itoa(n)}}
		var pg page[T]
		pageOp := op
		if n > 1 {
			pageOp = fmt.Sprintf("%s page %d", op, n)
		}
		if err := c.get(ctx, pageOp, p+route, q, accept, &pg); err != nil {
			return nil, err
		}
		if pg.Results == nil {
			return nil, &Error{Op: pageOp, StatusCode: 200, Reason: "malformed JSON response", Detail: "no results array"}
		}
		for _, it := range *pg.Results {
			k := key(it)
			if k == "" || !seen[k] {
				all = append(all, it)
			}
			seen[k] = true
		}
		total += len(*pg.Results)
		next := slices.ContainsFunc(pg.Links, func(l struct{ Rel string }) bool { return l.Rel == "next" })
		if !morePages(len(*pg.Results), total, pg.TotalCount, pg.Links != nil, next) {
			return all, nil
		}
	}
}

// morePages: stop at an empty page; else, when the page has links, when there
// is no "next" link; else, when totalCount is known, once that many items
// arrived; else at a short page.
func morePages(got, total int, totalCount *int, haveLinks, next bool) bool {
	switch {
	case got == 0:
		return false
	case haveLinks:
		return next
	case totalCount != nil:
		return total < *totalCount
	default:
		return got >= pageSize
	}
}
