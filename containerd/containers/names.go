package containers

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// Names in Docker's style, adjective_surname, so generated names read the same.
var (
	adjectives = []string{"admiring", "adoring", "agitated", "amazing", "angry", "awesome", "blissful", "bold",
		"brave", "busy", "charming", "clever", "cool", "compassionate", "competent", "confident", "dazzling",
		"determined", "eager", "ecstatic", "elastic", "elated", "elegant", "epic", "festive", "focused",
		"friendly", "frosty", "gallant", "gifted", "goofy", "gracious", "happy", "hopeful", "hungry",
		"inspiring", "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
		"musing", "nervous", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pensive",
		"practical", "priceless", "quirky", "quizzical", "relaxed", "reverent", "romantic", "serene",
		"sharp", "silly", "sleepy", "stoic", "strange", "sweet", "tender", "thirsty", "trusting", "upbeat",
		"vibrant", "vigilant", "wizardly", "wonderful", "xenodochial", "youthful", "zealous", "zen"}
	surnames = []string{"albattani", "allen", "archimedes", "ardinghelli", "babbage", "banach", "bardeen",
		"bartik", "bassi", "bell", "benz", "bhabha", "bohr", "booth", "borg", "bose", "brahmagupta",
		"brown", "carson", "cerf", "chandrasekhar", "clarke", "curie", "darwin", "davinci", "dijkstra",
		"easley", "einstein", "elion", "engelbart", "euclid", "euler", "fermat", "fermi", "feynman",
		"franklin", "galileo", "gates", "goldberg", "goodall", "hamilton", "hawking", "heisenberg",
		"hermann", "hodgkin", "hopper", "hypatia", "jackson", "jennings", "johnson", "kalam", "keller",
		"kepler", "knuth", "lamarr", "lamport", "leakey", "lovelace", "lumiere", "mayer", "mccarthy",
		"mcclintock", "meitner", "mendel", "morse", "newton", "nobel", "noether", "pare", "pascal",
		"pasteur", "perlman", "pike", "poincare", "ride", "ritchie", "roentgen", "sammet", "shannon",
		"shockley", "sinoussi", "swartz", "tesla", "thompson", "torvalds", "turing", "varahamihira",
		"visvesvaraya", "wilson", "wing", "wozniak", "wright", "yalow", "yonath"}
)

func pick(list []string) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
	return list[n.Int64()]
}

// randomName returns adjective_surname; with suffix, a digit is appended
// (after several collisions, as Docker does).
func randomName(suffix bool) string {
	name := pick(adjectives) + "_" + pick(surnames)
	if suffix {
		n, _ := rand.Int(rand.Reader, big.NewInt(10))
		name = fmt.Sprintf("%s%d", name, n.Int64())
	}
	return name
}
