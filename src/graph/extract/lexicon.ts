/**
 * The word lists the rule extractor is made of. Lower case throughout; kept small and
 * deliberate: every entry is a false positive or a missed fact someone would otherwise see.
 */

const words = (s: string): Set<string> => new Set(s.trim().split(/\s+/));

/**
 * Capitalised words that are never (part of) a name: sentence starters, pronouns, imperatives
 * common in notes ("Use Redis", "Never deploy"), days and months (dates are not entities here),
 * and the all-caps words of notes ("TODO", "FYI", "NOT"). They end a proper-noun phrase too,
 * so "On Monday Jane Doe" gives "Jane Doe".
 */
export const STOP_WORDS = words(`
  a an the this that these those some any each every all both either neither no none another other such
  my your our their his her its i we you he she it they me us them one someone everyone nobody something everything nothing
  and or but nor so yet if when whenever while after before since because although though unless until once then
  also however therefore thus hence meanwhile instead otherwise besides moreover furthermore anyway
  in on at for from to with without by of about as into onto over under between among during per via within across through
  is are was were be been being am do does did done has have had will would can could should shall may might must
  not never always often usually sometimes rarely already still just only even again maybe perhaps probably actually really
  yes ok okay thanks thank please hi hello hey dear cheers regards sorry
  here there where what which who whom whose why how
  today yesterday tomorrow tonight now currently recently soon later earlier first second third next last finally overall generally
  use uses used using add adds added remove removed run runs make set check see try let lets let's keep fix fixed update updated
  install create created delete deleted ensure avoid prefer remember note notes consider make sure ask tell send write read open close
  contact email ping talk reach share review approve
  version step section page figure table item
  deploy deployed build built test tested merge merged ship release move switch start stop restart call go get put take give find follow look wait
  important warning caution todo fixme fyi asap tbd tba eta imo imho btw aka wip nb ps re fw fwd lgtm eod eow etc
  monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays fridays saturdays sundays
  january february march april june july august september october november december
  mr mrs ms dr prof sir madam
`);

/** Lower-case words that join the parts of one name: "Bank of America", "Ludwig van Beethoven". */
export const NAME_CONNECTORS = words('of de da del della der den van von du la le');

/** A full stop after these does not end a sentence. */
export const ABBREVIATIONS = words('e.g i.e vs mr mrs ms dr prof st inc ltd corp co jr sr approx cf');

/** Bare domains under these are addresses, not code: "acme.com" is a url, "socket.io" a package. */
export const DOMAIN_SUFFIXES = words('com org net edu gov uk de fr eu');

/** What may separate the members of one list: "Alice, Bob and Carol use Redis". */
export const LIST_GAPS = new Set([',', 'and', ', and', 'or', ', or', '&', '/', 'as well as', 'plus']);

/** The noun after a name that says what it is: "the Apollo project depends on", "`Foo` class extends". */
export const HEAD_NOUNS = words(`
  project team service class function method module package library lib repo repository app application api
  database db cluster server bucket component file pipeline system tool framework group department office company
  org organisation organization crate gem plugin extension job queue script binary
`);

/** Words before a verb that do not change which relation it states. */
export const LEADING_MODIFIERS = words(`
  , which that who is are was were has have had been be being will would can could should shall may might must
  does do did also now still currently mainly mostly primarily heavily directly indirectly only already actually really
  officially recently to just eventually soon newly always usually often both all finally partly fully later going
`);

/** Words between a verb and its object that do not change what it relates: "manages the new Apollo". */
export const TRAILING_FILLERS = words(`
  the a an our their its his her my your this that these those new old legacy existing internal external
  main same entire whole shared both several some all
`);

/** relation ← what states it, active voice (subject → object). */
const ACTIVE: Record<string, string[]> = {
  uses: ['use', 'uses', 'used', 'using', 'utilise', 'utilises', 'utilised', 'utilize', 'utilizes', 'utilized', 'runs on', 'run on', 'ran on', 'running on', 'built on', 'built with'],
  depends_on: ['depend on', 'depends on', 'depended on', 'depending on', 'rely on', 'relies on', 'relied on', 'relying on', 'require', 'requires', 'required', 'requiring', 'need', 'needs', 'needed'],
  owns: ['own', 'owns', 'owned', 'owning', 'responsible for', 'the owner of', 'owner of'],
  calls: ['call', 'calls', 'called', 'calling', 'invoke', 'invokes', 'invoked', 'invoking'],
  imports: ['import', 'imports', 'imported', 'importing'],
  extends: ['extend', 'extends', 'extended', 'extending', 'inherit from', 'inherits from', 'inherited from', 'subclasses'],
  implements: ['implement', 'implements', 'implemented', 'implementing'],
  part_of: ['part of', 'a part of', 'belong to', 'belongs to', 'belonged to', 'a component of', 'component of', 'a member of', 'member of'],
  works_on: ['work on', 'works on', 'worked on', 'working on'],
  manages: ['manage', 'manages', 'managed', 'managing', 'lead', 'leads', 'led', 'leading', 'head', 'heads', 'headed', 'in charge of', 'the manager of', 'manager of'],
  reports_to: ['report to', 'reports to', 'reported to', 'reporting to'],
  replaced: ['replace', 'replaces', 'replaced', 'replacing', 'supersede', 'supersedes', 'superseded'],
};

/** relation ← participles whose "<participle> by" states it with subject and object swapped. */
const PASSIVE: Record<string, string[]> = {
  uses: ['used', 'utilised', 'utilized'],
  depends_on: ['required', 'needed'],
  owns: ['owned'],
  calls: ['called', 'invoked'],
  imports: ['imported'],
  extends: ['extended'],
  implements: ['implemented'],
  manages: ['managed', 'led', 'headed'],
  replaced: ['replaced', 'superseded'],
};

export interface RelationVerb {
  relation: string;
  /** The object comes first: "Y is used by X" states X uses Y. */
  reverse: boolean;
}

export const RELATION_VERBS: ReadonlyMap<string, RelationVerb> = new Map<string, RelationVerb>([
  ...Object.entries(ACTIVE).flatMap(([relation, forms]) => forms.map((f): [string, RelationVerb] => [f, { relation, reverse: false }])),
  ...Object.entries(PASSIVE).flatMap(([relation, forms]) => forms.map((f): [string, RelationVerb] => [`${f} by`, { relation, reverse: true }])),
]);
