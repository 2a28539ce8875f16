package daemon

import (
	"net/http"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
)

// system df and the prunes `system prune` calls that have nothing to do
// here: the node has no user networks and no build cache.

// diskUsage answers both shapes of GET /system/df: API >= 1.52 clients read
// the *Usage summaries, older ones (docker 20.10) the lists and LayersSize.
type diskUsage struct {
	system.DiskUsage
	LayersSize int64
	Images     []image.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
	BuildCache []build.CacheRecord
}

func (d *Daemon) systemDF(w http.ResponseWriter, r *http.Request) {
	imgs, err := d.images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	all := d.containers.List(true)
	used := map[string]int64{}
	for _, c := range all {
		used[c.ImageID]++
	}
	out := diskUsage{Images: []image.Summary{}, Containers: []container.Summary{}, Volumes: []volume.Volume{}, BuildCache: []build.CacheRecord{}}
	iu := &image.DiskUsage{Items: []image.Summary{}}
	for _, img := range imgs {
		s := image.Summary{
			ID: img.ID, ParentID: img.Parent, RepoTags: nonNilSlice(img.RepoTags), RepoDigests: []string{},
			Created: img.Created.Unix(), Size: img.Size, Containers: used[img.ID],
			Labels: nonNilMap(img.Config.Config.Labels),
		}
		out.Images = append(out.Images, s)
		out.LayersSize += img.Size
		iu.TotalCount++
		iu.TotalSize += img.Size
		if used[img.ID] > 0 {
			iu.ActiveCount++
		} else {
			iu.Reclaimable += img.Size
		}
	}
	iu.Items = out.Images
	cu := &container.DiskUsage{Items: []container.Summary{}}
	now := time.Now()
	for _, c := range all {
		s := d.summaryOf(c, now)
		s.SizeRw, _ = d.containers.SizeRw(c.ID)
		out.Containers = append(out.Containers, s)
		cu.TotalCount++
		cu.TotalSize += s.SizeRw
		if c.State.Running {
			cu.ActiveCount++
		} else {
			cu.Reclaimable += s.SizeRw
		}
	}
	cu.Items = out.Containers
	out.ImageUsage, out.ContainerUsage = iu, cu
	out.VolumeUsage = d.volumeUsage()
	out.Volumes = out.VolumeUsage.Items
	out.BuildCacheUsage = &build.DiskUsage{Items: []build.CacheRecord{}}
	writeJSON(w, http.StatusOK, out)
}

// buildPrune: there is no build cache (builds are not kept between runs).
func (d *Daemon) buildPrune(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
}
