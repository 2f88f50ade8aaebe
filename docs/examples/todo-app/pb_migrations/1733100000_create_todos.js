/// <reference path="../pb_data/types.d.ts" />

// The todos collection: a title and a done flag; anyone may read and add (a demo).
migrate((app) => {
  const todos = new Collection({
    type: "base",
    name: "todos",
    listRule: "",
    viewRule: "",
    createRule: "",
    fields: [
      { name: "title", type: "text", required: true, max: 200 },
      { name: "done", type: "bool" },
    ],
  })
  app.save(todos)
}, (app) => {
  app.delete(app.findCollectionByNameOrId("todos"))
})
