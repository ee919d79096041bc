package atlas

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
)

const (
	// pageSize is the itemsPerPage the client asks for (Atlas's maximum).
	pageSize = 500
	// maxPages stops a server that keeps announcing more pages.
	maxPages = 1000
)

// checkGroupID rejects ids that aren't 24 lowercase hex digits (the pattern
// Atlas documents), so a bad setting never reaches a URL.
func checkGroupID(op, groupID string) error {
	if !groupIDPattern.MatchString(groupID) {
		return &Error{Op: op, Reason: "invalid argument", Detail: fmt.Sprintf("group id %q is not 24 hex digits", clean(groupID, 64))}
	}
	return nil
}

var groupIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// EncryptionAtRest returns the project's encryption-at-rest configuration
// (GET /api/atlas/v2/groups/{groupId}/encryptionAtRest, version 2023-01-01).
// When the project has no Azure Key Vault configured, AzureKeyVault is the
// zero value (Enabled false); Valid is nil when Atlas doesn't report it. An
// unknown project is an *Error with StatusCode 404.
func (c *Client) EncryptionAtRest(ctx context.Context, groupID string) (EncryptionAtRest, error) {
	const op = "EncryptionAtRest"
	var ear EncryptionAtRest
	err := checkGroupID(op, groupID)
	if err == nil {
		err = c.get(ctx, op, "/api/atlas/v2/groups/"+groupID+"/encryptionAtRest", nil, acceptEAR, &ear)
	}
	if err != nil {
		return EncryptionAtRest{}, err
	}
	return ear, nil
}

// PrivateEndpoints returns every Azure EAR private endpoint of the project
// (GET …/encryptionAtRest/AZURE/privateEndpoints, version 2023-01-01), all
// pages, in Atlas's order, without duplicates (by id) should items shift
// between pages. No endpoints is an empty, non-nil slice.
func (c *Client) PrivateEndpoints(ctx context.Context, groupID string) ([]PrivateEndpoint, error) {
	const op = "PrivateEndpoints"
	if err := checkGroupID(op, groupID); err != nil {
		return nil, err
	}
	items, err := listAll[PrivateEndpoint](ctx, c, op, "/api/atlas/v2/groups/"+groupID+"/encryptionAtRest/AZURE/privateEndpoints", acceptEAR)
	if err != nil {
		return nil, err
	}
	return dedupe(items, func(e PrivateEndpoint) string { return e.ID }), nil
}

// clusterWire is the part of ClusterDescription20240805 the client reads.
type clusterWire struct {
	ID                       string `json:"id"`
	Name                     string `json:"name"`
	Paused                   bool   `json:"paused"`
	StateName                string `json:"stateName"`
	EncryptionAtRestProvider string `json:"encryptionAtRestProvider"`
	ReplicationSpecs         []struct {
		RegionConfigs []RegionConfig `json:"regionConfigs"`
	} `json:"replicationSpecs"`
}

// Clusters returns every cluster of the project (GET …/clusters, version
// 2024-08-05), all pages, in Atlas's order, without duplicates (by id).
// RegionConfigs lists replicationSpecs[].regionConfigs[] de-duplicated in
// first-seen order (nil when there are none). No clusters is an empty,
// non-nil slice.
func (c *Client) Clusters(ctx context.Context, groupID string) ([]Cluster, error) {
	const op = "Clusters"
	if err := checkGroupID(op, groupID); err != nil {
		return nil, err
	}
	items, err := listAll[clusterWire](ctx, c, op, "/api/atlas/v2/groups/"+groupID+"/clusters", acceptClusters)
	if err != nil {
		return nil, err
	}
	items = dedupe(items, func(w clusterWire) string { return cmp.Or(w.ID, "name:"+w.Name) })
	out := make([]Cluster, 0, len(items))
	for _, w := range items {
		cl := Cluster{ID: w.ID, Name: w.Name, Paused: w.Paused, StateName: w.StateName, EncryptionAtRestProvider: w.EncryptionAtRestProvider}
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

// dedupe keeps the first item of each key (items without a key all stay),
// should items shift between pages while they are read.
func dedupe[T any](items []T, key func(T) string) []T {
	seen := make(map[string]bool, len(items))
	return slices.DeleteFunc(items, func(it T) bool {
		k := key(it)
		dup := k != "" && seen[k]
		seen[k] = true
		return dup
	})
}

// page is Atlas's paginated envelope.
type page[T any] struct {
	Results    *[]T   `json:"results"`
	TotalCount *int   `json:"totalCount"`
	Links      []link `json:"links"`
}

// link is an RFC 5988 link of a paginated answer.
type link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

// listAll reads every page of a paginated GET. It asks for pageSize items per
// page and moves on by pageNum (never by following a link's href, which could
// point elsewhere). It stops at an empty page; else, when the page has links,
// when there is no "next" link; else, when totalCount is known, once that many
// items arrived; else at a short page.
func listAll[T any](ctx context.Context, c *Client, op, path, accept string) ([]T, error) {
	var all []T
	for n := 1; ; n++ {
		if n > maxPages {
			return nil, &Error{Op: op, StatusCode: 200, Reason: "too many pages", Detail: fmt.Sprintf("more than %d pages", maxPages)}
		}
		q := url.Values{
			"includeCount": {"true"},
			"itemsPerPage": {strconv.Itoa(pageSize)},
			"pageNum":      {strconv.Itoa(n)},
		}
		var p page[T]
		pageOp := op
		if n > 1 {
			pageOp = fmt.Sprintf("%s page %d", op, n)
		}
		if err := c.get(ctx, pageOp, path, q, accept, &p); err != nil {
			return nil, err
		}
		if p.Results == nil {
			return nil, &Error{Op: pageOp, StatusCode: 200, Reason: "malformed JSON response", Detail: "no results array"}
		}
		all = append(all, *p.Results...)
		if !morePages(len(*p.Results), len(all), p.TotalCount, p.Links != nil, slices.ContainsFunc(p.Links, func(l link) bool { return l.Rel == "next" })) {
			break
		}
	}
	if all == nil {
		all = []T{}
	}
	return all, nil
}

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
