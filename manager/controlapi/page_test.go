package controlapi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// TestListPage: pages follow each other by token, in ID order, end at the
// page size or before MaxListPageBytes, and the last one has no token.
func TestListPage(t *testing.T) {
	var tasks []*api.Task
	for i := 9; i >= 0; i-- { // stored order does not matter
		tasks = append(tasks, &api.Task{Id: fmt.Sprintf("t%d", i), Slot: uint64(i)})
	}
	even := func(x *api.Task) bool { return x.GetSlot()%2 == 0 }
	var got []string
	token, pages := "", 0
	for {
		page, next := listPage(tasks, even, token, 2)
		pages++
		for _, x := range page {
			got = append(got, x.GetId())
		}
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(got, ",") != "t0,t2,t4,t6,t8" || pages != 3 {
		t.Fatalf("pages of 2 even tasks: %v in %d pages", got, pages)
	}
	// A page is returned as a copy.
	page, _ := listPage(tasks, even, "", 1)
	page[0].Slot = 100
	if tasks[9].GetSlot() != 0 {
		t.Fatal("listPage handed out a stored object")
	}

	// Big objects: a page stops before MaxListPageBytes, whatever the size.
	big := strings.Repeat("x", MaxListPageBytes/3)
	var large []*api.Task
	for i := range 5 {
		large = append(large, &api.Task{Id: fmt.Sprintf("b%d", i), Status: &api.TaskStatus{Message: big}})
	}
	all := func(*api.Task) bool { return true }
	page, next := listPage(large, all, "", 0)
	if len(page) != 2 || next != "b1" {
		t.Fatalf("page of big tasks: %d tasks, next %q", len(page), next)
	}
}
